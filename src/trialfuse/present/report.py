"""report.html: what the search did and what the winning network learned, from the run directory alone.

Built at the end of every run and again by `trialfuse report RUN_DIR`, from results.json,
the Optuna storage, timeline.json and diagnostics.json. Plots are matplotlib PNGs in
report_files/ beside the page, so it opens offline with no server.
"""
from __future__ import annotations

import html
from pathlib import Path
from typing import Any

import numpy as np
import optuna
from matplotlib.patches import Rectangle
from matplotlib.ticker import MaxNLocator

from trialfuse.blend import member_weights
from trialfuse.catalog import FAMILIES
from trialfuse.driver import run_dir
from trialfuse.driver.run_record import EnsembleRecord, MemberRecord, NotKept, RunRecord, best_single_met, cv_of
from trialfuse.present.holdout import holdout_section
from trialfuse.present.page import Page, fmt, table
from trialfuse.task import Metric

SECTIONS = ("summary", "comparison", "ensemble", "holdout", "winner", "history", "importances", "folds", "timeline",
            "diagnostics", "dashboard")
COLORS = {**{name: row.color for name, row in FAMILIES.items()}, "retrain": "black", "save": "dimgray",
          "diagnose": "tab:pink"}


def write_report(out: Path | str) -> str:
    """Build the run's report; one line for the person watching: where it is or, since the
    results are saved and a plotting failure must not hide them, why it is not."""
    try:
        return f"report: {build_report(Path(out))}"
    except Exception as exc:
        return f"the report could not be written ({type(exc).__name__}: {exc}); retry with `trialfuse report {out}`"


def build_report(out: Path) -> Path:
    """Write out/report.html (and out/report_files/) for a finished run; returns the page's path."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # its in-memory studies for importances log each one
    out = Path(out)
    record = RunRecord.read(out)
    page = Page(out)
    studies = record.trials(out)
    _summary(page, record)
    _comparison(page, record)
    _ensemble(page, record.ensemble, record.task.metric, record.task.loss_name)
    holdout_section(page, record, out)
    _winner(page, out)
    _history(page, studies, record.task.metric)
    _importances(page, studies)
    _fold_scores(page, record)
    _timeline(page, out)
    _diagnostics(page, out)
    _dashboard(page, record.storage_at(out))
    body = "\n".join(page.sections)
    text = (f"<!doctype html><html><head><meta charset='utf-8'><title>trialfuse report: {html.escape(str(out))}"
            f"</title><style>{STYLE}</style></head><body><h1>trialfuse report</h1>\n{body}\n</body></html>\n")
    target = out / run_dir.REPORT
    run_dir.write_text(target, text)
    return target


STYLE = ("body{font-family:sans-serif;max-width:1000px;margin:2em auto;color:#222}"
         "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}"
         "th{background:#f4f4f4}img{max-width:100%;display:block;margin:1em 0}.warn{color:#a40}"
         "code{background:#f4f4f4;padding:1px 4px}")


def _summary(page: Page, record: RunRecord) -> None:
    facts = [["data", record.data], ["target", record.target], ["task", record.task.described],
             ["rows (holdout)", f"{record.rows} ({record.holdout_rows})"], ["folds", record.folds],
             ["device / workers", f"{record.device} / {record.workers}"], ["winner", record.winner],
             [f"holdout {record.task.metric.label} of the winner", record.task.show(record.holdout_score)
              + record.prior_shown()],
             ["seconds", f"{record.seconds:.1f}"], ["time budget ran out", record.budget_exhausted]]
    parts = [table(["", "value"], facts)]
    for warning in record.warnings:
        parts.append(f'<p class="warn">warning: {html.escape(warning)}</p>')
    page.section("summary", "Summary", parts)


def _comparison(page: Page, record: RunRecord) -> None:
    """Best CV score per family with its fold spread; the winner's holdout score beside it (every
    score as people read it: log-loss positive, lower better)."""
    label, shown = record.task.metric.label, _shown(record.task.metric)
    ok = list(record.ranking)
    families = record.families
    parts: list[str] = []
    with page.figure("comparison", parts, size=(7, 3.5)) as fig:
        ax = fig.add_subplot()
        means = [shown(families[f].cv_score_mean) for f in ok]
        lows = [m - min(map(shown, families[f].cv_score_folds)) for f, m in zip(ok, means, strict=True)]
        highs = [max(map(shown, families[f].cv_score_folds)) - m for f, m in zip(ok, means, strict=True)]
        ax.bar(ok, means, yerr=[lows, highs], capsize=6, color=[COLORS.get(f, "grey") for f in ok])
        ax.scatter([record.winner], [shown(record.holdout_score)], marker="D", color="black", zorder=3,
                   label=f"holdout {label} (winner)")
        ax.set_ylabel(label)
        ax.set_title(f"best CV {label} per family (bars: fold min-max)")
        ax.legend()
    holdout = record.holdout_scores()
    rows = []
    for name, fam in families.items():
        folds = [shown(s) for s in fam.cv_score_folds] or [np.nan]
        status = f"{fam.status}: {fam.reason}" if fam.status != "ok" and fam.reason else fam.status
        rows.append([name, status, shown(fam.cv_score_mean), fam.cv_score_sd, float(np.min(folds)),
                     float(np.max(folds)), shown(holdout.get(name)),
                     fam.trials_complete, fam.trials_pruned, fam.trials_failed, fam.train_seconds_text])
    parts.append(table(["family", "status", f"CV {label} mean", "fold sd", "fold min", "fold max", f"holdout {label}",
                         "complete", "pruned", "failed", "train seconds"], rows))
    page.section("comparison", "Family comparison", parts)


def _shown(metric: Metric):
    """A score (or None) as people read it: log-loss positive; others as they are."""
    return lambda score: None if score is None else metric.shown(score)


def _ensemble(page: Page, record: EnsembleRecord | NotKept | None, metric: Metric, loss: str) -> None:
    """The ensemble chosen on out-of-fold predictions: members, weights, and how it compares."""
    if not record:
        page.section("ensemble", "Ensemble", ["<p>Not built (<code>--no-ensemble</code>).</p>"])
        return
    if "oof_score" not in record:
        page.section("ensemble", "Ensemble", [f"<p>Not built: {html.escape(record.get('reason', ''))}.</p>"])
        return
    chosen = record["chosen"]
    inner = "best_single_inner_oof_score" in record  # taking the best, chosen per inner fold
    single = best_single_met(record)
    close = (f": the best single model scores better, but not clearly (an ensemble is kept unless the single "
             f"model's per-row {loss} is lower by two standard errors)") if single > record["oof_score"] else ""
    verdict = (f"saved as the winner{close}" if chosen else f"not saved: {record.get('reason', '')}")
    label, shown = metric.label, _shown(metric)
    stacked = record.get("method") == "stack"
    stack_score = fmt(shown(record.get("stack_oof_score")))
    average_score = fmt(shown(record.get("caruana_inner_oof_score", record.get("caruana_oof_score"))))
    how = (f"a stack: a linear second-level model on the kept models' out-of-fold predictions "
           f"(inner out-of-fold {label} {stack_score}; the greedy average's {average_score})" if stacked else
           f"greedy ensemble selection (Caruana et al. 2004), {record['rounds']} rounds" +
           (f" (inner out-of-fold {label} {average_score}; a stack's {stack_score})"
            if "caruana_inner_oof_score" in record else
            f" (a stack's inner out-of-fold {label}: {stack_score})" if "stack_oof_score" in record else ""))
    parts = [f"<p>Chosen among the {record['candidates']} kept models' out-of-fold predictions by {how}; "
             f"{html.escape(verdict)}. The holdout scores the saved model only; it chooses nothing.</p>"]
    scores = [[f"{'inner ' * inner}out-of-fold {label}", shown(record["oof_score"]), shown(single)]]
    if "fold_scores" in record:  # as the families' CV reads: pooled, an RMSE is never below its folds' mean
        mean, _, single_mean = cv_of(record)
        scores.append([f"{label}, mean of the folds' (as each family's CV)", shown(mean), shown(single_mean)])
    if chosen:
        scores.append([f"holdout {label}", shown(record.get("holdout_score")),
                       shown(record.get("best_single_holdout_score"))])
    parts.append(table(["", "ensemble", "best single model"], scores))
    members = record["members"]
    what, weights = member_weights([m["weight"] for m in members], record.get("stack"))
    parts.append(table(["member", what, f"CV {label} mean", "served as"],
                        [[f"{m['family']} trial {m['trial']}", w, shown(m["cv_score_mean"]), _served_as(m)]
                         for m, w in zip(members, weights, strict=True)]))
    with page.figure("ensemble", parts, size=(7, 0.5 + 0.35 * len(members))) as fig:
        ax = fig.add_subplot()
        labels = [f"{m['family']} {m['trial']}" for m in members]
        ax.barh(labels, weights, color=[COLORS.get(m["family"], "grey") for m in members])
        ax.invert_yaxis()
        ax.set_xlabel(what)
    page.section("ensemble", "Ensemble", parts)


def _served_as(member: MemberRecord) -> str:
    if member.get("model_files"):
        return f"mean of its {len(member['model_files'])} fold models"
    return "refit on all search rows" if member.get("model_file") else ""


def _read_or_say(page: Page, path: Path, key: str, title: str, absent: str) -> Any | None:
    """The JSON a section draws on, or None after a section saying why it is absent."""
    if not path.exists():
        page.section(key, title, [f"<p>{absent}</p>"])
        return None
    return run_dir.read_json(path)


def _winner(page: Page, out: Path) -> None:
    """What the saved model learned and where it errs, from explain.json."""
    found = _read_or_say(page, out / run_dir.EXPLAIN, "winner", "The winner",
                         "Not explained (<code>--no-explain</code>, or see the warnings); "
                         "<code>trialfuse explain RUN_DIR</code> adds it.")
    if found is None:
        return
    shap = found.get("shap")
    rows = found.get("rows", {})
    used = ", ".join(f"{part.replace('_', ' ').replace('shap', 'SHAP')} {count}" for part, count in rows.items()
                     if part != "plots")
    metric = found.get("metric", "R²")
    score = found["score"] if "score" in found else found["r2"]  # explain.json written before tasks: "r2"
    parts = [f"<p>On {html.escape(found['rows_from'])}: {found['rows_used']} rows plotted, {metric} {score:.4f} on "
             f"them; rows used ({html.escape(used)}) chosen to keep the explanation within a few seconds. "
             f"Importance is how much the {metric} worsens when a feature's values are shuffled "
             + (f"(mean of {found['repeats']} shuffles, bars: one standard deviation)" if found["repeats"] > 1 else
                "(one shuffle, all the time left allowed: its spread unknown)")
             + (f"; beside it the mean |SHAP value| ({html.escape(shap)})." if shap else
                f"; SHAP values are not computed for this model "  # (explain.json before 2026-12-07: no reason)
                f"({html.escape(found.get('shap_none') or 'not every member is a tree model')}).") + "</p>"]
    actual, predicted = np.asarray(found["points"]["actual"]), np.asarray(found["points"]["predicted"])
    if predicted.ndim == 1:  # numbers: predicted against actual (classes: see "The holdout")
        _fit_plot(page, parts, actual, predicted)
    top = found["features"][:20]
    with page.figure("winner_importance", parts, size=(9, 0.8 + 0.25 * len(top))) as fig:
        axes = fig.subplots(1, 2 if shap else 1, squeeze=False)[0]
        names = [f["name"] for f in top]
        drops = [f.get("permutation_drop", f.get("permutation_r2_drop")) for f in top]
        axes[0].barh(names, drops, xerr=[f["permutation_std"] for f in top])
        axes[0].invert_yaxis()
        axes[0].set_xlabel(f"{metric} worsening when shuffled")  # log-loss, RMSE: a rise
        if shap:
            axes[1].barh(names, [f["mean_abs_shap"] for f in top], color="tab:orange")
            axes[1].invert_yaxis()
            axes[1].set_xlabel("mean |SHAP value|\n" + ("(log-odds, summed over classes)" if found.get("classes")
                                                        else "(target units)"))
    curves = found["partial_dependence"]
    if curves:
        with page.figure("winner_partial_dependence", parts, size=(3.2 * len(curves), 3)) as fig:
            for ax, curve in zip(fig.subplots(1, len(curves), squeeze=False)[0], curves, strict=True):
                for k, line in enumerate(curve.get("by_class") or [curve["average"]]):
                    ax.plot(curve["grid"], line, label=str(found["classes"][k]) if "by_class" in curve else None)
                if "by_class" in curve:
                    ax.legend(fontsize=6)
                ax.set_xlabel(curve["feature"])
                ax.set_ylabel("average prediction" if not found.get("classes") else "average probability"
                              if "by_class" in curve else f"average P({found['classes'][-1]})")  # two: the second
    page.section("winner", "The winner", parts)


def _fit_plot(page: Page, parts: list[str], actual: np.ndarray, predicted: np.ndarray) -> None:
    """Predicted against actual, and the residuals, for a model of numbers."""
    with page.figure("winner_fit", parts, size=(9, 4)) as fig:
        ax, ax2 = fig.subplots(1, 2)
        ax.scatter(actual, predicted, s=4, alpha=0.4)
        low, high = float(min(actual.min(), predicted.min())), float(max(actual.max(), predicted.max()))
        ax.plot([low, high], [low, high], color="black", linewidth=1, label="y = x")
        ax.set_xlabel("actual")
        ax.set_ylabel("predicted")
        ax.legend()
        ax2.scatter(predicted, actual - predicted, s=4, alpha=0.4)
        ax2.axhline(0, color="black", linewidth=1)
        ax2.set_xlabel("predicted")
        ax2.set_ylabel("residual (actual - predicted)")


def _history(page: Page, studies: dict[str, list[optuna.trial.FrozenTrial]], metric: Metric) -> None:
    """Every trial's CV score in the order asked, pruned ones at their last fold, and the best so far."""
    shown = np.vectorize(metric.shown, otypes=[float])
    parts: list[str] = []
    state = optuna.trial.TrialState
    with page.figure("history", parts, size=(8, 2.6 * max(1, len(studies)))) as fig:
        for i, (family, trials) in enumerate(studies.items()):
            ax = fig.add_subplot(len(studies), 1, i + 1)
            done = [t for t in trials if t.state == state.COMPLETE]
            pruned = [t for t in trials if t.state == state.PRUNED and t.intermediate_values]
            if done:
                ax.scatter([t.number for t in done], shown([t.value for t in done]), color=COLORS.get(family),
                           label="complete")
            if pruned:
                ax.scatter([t.number for t in pruned], shown([t.intermediate_values[t.last_step] for t in pruned]),
                           marker="x", color="grey", label="pruned (mean so far)")
            if done:
                ax.step([t.number for t in done], shown(np.maximum.accumulate([t.value for t in done])), where="post",
                        color="black", label="best so far")
            ax.set_ylabel(f"CV {metric.label}")
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # trials are whole (two read 0.2, 0.4, ...)
            ax.set_title(family)
            if done or pruned:
                ax.legend(fontsize=7)
            else:  # every trial failed or was cut by the budget: nothing to draw, and said
                ax.text(0.5, 0.5, "no trial finished a fold", ha="center", va="center", transform=ax.transAxes)
        if fig.axes:
            fig.axes[-1].set_xlabel("trial")
    page.section("history", "Optimization history", parts)


def _importances(page: Page, studies: dict[str, list[optuna.trial.FrozenTrial]]) -> None:
    """Optuna's fANOVA parameter importances per family (needs a few complete trials)."""
    parts: list[str] = []
    found: dict[str, dict[str, float]] = {}
    for family, trials in studies.items():
        complete = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
        if len(complete) < 3:
            parts.append(f"<p>{family}: too few complete trials ({len(complete)}) to rank parameters.</p>")
            continue
        study = optuna.create_study(direction="maximize")
        study.add_trials(complete)
        try:
            evaluator = optuna.importance.FanovaImportanceEvaluator(seed=0)
            found[family] = optuna.importance.get_param_importances(study, evaluator=evaluator)
        except (RuntimeError, ValueError) as exc:
            parts.append(f"<p>{family}: importances unavailable ({html.escape(str(exc))}).</p>")
    if found:
        with page.figure("importances", parts, size=(8, 2.4 * len(found))) as fig:
            for i, (family, values) in enumerate(found.items()):
                ax = fig.add_subplot(len(found), 1, i + 1)
                names = list(values)[::-1]
                ax.barh(names, [values[n] for n in names], color=COLORS.get(family))
                ax.set_title(family)
            fig.axes[-1].set_xlabel("importance (fANOVA, share of variance)")
    page.section("importances", "Parameter importances", parts)


def _fold_scores(page: Page, record: RunRecord) -> None:
    """Each family's best trial, fold by fold: how much the folds disagree."""
    parts: list[str] = []
    shown = _shown(record.task.metric)
    families = {n: f for n, f in record.families.items() if f.cv_score_folds}
    with page.figure("folds", parts, size=(7, 3.5)) as fig:
        ax = fig.add_subplot()
        for name, fam in families.items():
            ax.plot(range(len(fam.cv_score_folds)), [shown(s) for s in fam.cv_score_folds], marker="o",
                    color=COLORS.get(name), label=f"{name} (trial {fam.best_trial})")
        ax.set_xlabel("fold")
        ax.set_ylabel(f"validation {record.task.metric.label}")
        ax.legend()
    rows = [[name, fam.best_trial, *map(shown, fam.cv_score_folds)] for name, fam in families.items()]
    width = max((len(r) for r in rows), default=2) - 2
    parts.append(table(["family", "trial", *[f"fold {i}" for i in range(width)]], rows))
    page.section("folds", "Per-fold scores of the best trials", parts)


def _timeline(page: Page, out: Path) -> None:
    """What each worker ran and when, and the share of the run it was busy."""
    parts: list[str] = []
    path = out / run_dir.TIMELINE
    tasks = run_dir.read_json(path)["tasks"] if path.exists() else []
    if not tasks:
        page.section("timeline", "Device timeline", ["<p>No timeline was recorded.</p>"])
        return
    start = min(t["start"] for t in tasks)
    span = max(t["end"] for t in tasks) - start
    workers = sorted({t["worker"] for t in tasks})
    with page.figure("timeline", parts, size=(9, 1 + 0.6 * len(workers))) as fig:
        ax = fig.add_subplot()
        for task in tasks:
            ax.broken_barh([(task["start"] - start, task["end"] - task["start"])], (task["worker"] - 0.4, 0.8),
                           color=COLORS.get(task["what"], "grey"))
        ax.set_yticks(workers, [f"worker {w}" for w in workers])
        ax.set_xlabel("seconds since the first task")
        handles = [Rectangle((0, 0), 1, 1, color=COLORS.get(w, "grey")) for w in dict.fromkeys(
            t["what"] for t in tasks)]
        ax.legend(handles, list(dict.fromkeys(t["what"] for t in tasks)), fontsize=7, loc="upper right")
    rows = []
    for worker in workers:
        busy = sum(t["end"] - t["start"] for t in tasks if t["worker"] == worker)
        rows.append([f"worker {worker}", sum(t["worker"] == worker for t in tasks), f"{busy:.1f}",
                     f"{busy / span:.0%}" if span > 0 else "-"])
    parts.append(table(["worker", "tasks", "busy seconds", "busy fraction"], rows))
    page.section("timeline", "Device timeline", parts)


def _diagnostics(page: Page, out: Path) -> None:
    """The NN probe: losses, gradient flow per layer, dead units and activations per layer."""
    diag = _read_or_say(page, out / run_dir.DIAGNOSTICS, "diagnostics", "NN diagnostics",
                        "No NN diagnostics: the NN was not searched, completed no trial, or its probe did not "
                        "fit the time left (the summary's warnings say which).")
    if diag is None:
        return
    parts = [f"<p>Best NN trial {diag.get('trial')} retrained on fold 0 ({diag['train_rows']} rows, "
             f"{diag['val_rows']} validation rows): best epoch {diag['best_epoch']} of {diag['epochs_run']}, "
             + (f"validation {diag['metric']} {diag['val_score']:.4f} (the prior's: {diag['prior_score']:.4f}).</p>"
                if "val_score" in diag else f"validation R² {diag['val_r2']:.4f}.</p>")]  # a probe before tasks
    parts += [f'<p class="warn">warning: {html.escape(w)}</p>' for w in diag["warnings"]]
    epochs = diag["epochs"]
    with page.figure("diagnostics_training", parts, size=(9, 3.5)) as fig:
        loss_ax, grad_ax = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
        loss_ax.plot([e["train_loss"] for e in epochs], label="train")
        loss_ax.plot([e["val_loss"] for e in epochs], label="validation")
        loss_ax.set_yscale("log")
        loss_ax.set_xlabel("epoch")
        loss_ax.set_ylabel(diag["loss_units"], fontsize=7)
        loss_ax.legend()
        norms = np.array([e["grad_norm"] for e in epochs], dtype=np.float64)
        for i in range(norms.shape[1] if norms.ndim == 2 else 0):
            label = "output layer" if i == norms.shape[1] - 1 else f"hidden layer {i}"
            grad_ax.plot(np.maximum(norms[:, i], 1e-12), label=label)
        grad_ax.set_yscale("log")
        grad_ax.set_xlabel("epoch")
        grad_ax.set_ylabel("gradient norm")
        grad_ax.legend(fontsize=7)
    layers = diag["layers"]
    with page.figure("diagnostics_layers", parts, size=(9, 3)) as fig:
        names = [f"layer {layer['layer']}" for layer in layers]
        dead_ax, act_ax = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
        dead_ax.bar(names, [layer["dead_fraction"] for layer in layers], color="tab:red")
        dead_ax.set_ylim(0, 1)
        dead_ax.set_ylabel("dead unit fraction")
        act_ax.bar(names, [layer["activation_mean"] for layer in layers],
                   yerr=[layer["activation_std"] for layer in layers], capsize=6)
        act_ax.set_ylabel("activation mean ± sd")
    rows = [[layer["layer"], layer["width"], layer["weight_mean"], layer["weight_std"], layer["weight_abs_max"],
             layer["activation_mean"], layer["activation_std"], f"{layer['dead_fraction']:.0%}",
             float(np.mean(layer["bn_running_mean"])), float(np.mean(layer["bn_running_var"]))] for layer in layers]
    parts.append(table(["layer", "width", "weight mean", "weight sd", "weight |max|", "act. mean", "act. sd",
                         "dead", "BN mean (avg)", "BN var (avg)"], rows))
    page.section("diagnostics", "NN diagnostics", parts)


def _dashboard(page: Page, storage: str) -> None:
    command = f"optuna-dashboard {storage}"
    page.section("dashboard", "Browse the studies", [
        f"<p>The run's Optuna storage opens unchanged in optuna-dashboard (<code>pip install optuna-dashboard</code>):"
        f"</p><p><code>{html.escape(command)}</code></p>"])
