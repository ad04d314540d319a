import json
import subprocess
import sys

from helpers import cli


def test_bench_times_serial_fused_and_auto(tmp_path):
    out = tmp_path / "bench.json"
    proc = cli("bench", "--rows", "300", "--configs", "4", "--folds", "2", "--epochs", "6", "--json", "--save", out)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert json.loads(out.read_text()) == report
    assert set(report["modes"]) == {"serial", "fused", "auto"}
    assert report["modes"]["serial"]["speedup_vs_serial"] == 1.0
    for mode in report["modes"].values():
        assert mode["seconds"] > 0 and 0 < mode["model_epochs"] <= 4 * 2 * 6
    assert report["modes"]["fused"]["batch_modes"] == ["fused"]
    assert report["modes"]["serial"]["batch_modes"] == ["serial"]


def test_bench_rejects_bad_modes():
    proc = cli("bench", "--modes", "turbo")
    assert proc.returncode == 2
    assert "--modes takes serial, auto, serial-tf32, fused, fused-tf32, fused-bf16" in proc.stderr


def test_engine_and_bench_need_neither_optuna_nor_tree_libraries():
    """A bare GPU machine has numpy, scikit-learn and torch only."""
    code = ("import sys\n"
            "for name in ('optuna', 'xgboost', 'lightgbm', 'catboost'): sys.modules[name] = None\n"
            "import trialfuse.cli, trialfuse.bench, trialfuse.engine.fused.train\n"
            "from trialfuse import train_many\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr


def test_a_mode_past_its_time_limit_is_cut_and_every_finished_mode_is_handed_on():
    from trialfuse.bench import format_report, run_bench

    seen = []
    report = run_bench(rows=300, configs=2, folds=2, epochs=6, modes=("fused", "serial"), mode_limit_s=0.0,
                       on_mode=lambda partial: seen.append(sorted(partial["modes"])))
    assert report["modes"] == {"fused": {"cut_after_s": 0.0}, "serial": {"cut_after_s": 0.0}}
    assert seen == [["fused"], ["fused", "serial"]]
    assert "cut: still training after 0 s" in format_report(report)
    finished = run_bench(rows=300, configs=2, folds=2, epochs=6, modes=("fused",), mode_limit_s=600)
    assert finished["modes"]["fused"]["model_epochs"] > 0


def test_bench_rejects_a_bad_shape():
    proc = cli("bench", "--shape", "wide")
    assert proc.returncode == 2 and "--shape must be DEPTHxWIDTH" in proc.stderr


def test_bench_refuses_a_device_it_cannot_train_on_and_a_file_it_cannot_write_before_timing(tmp_path, run_main):
    """`--device cuda` on a CPU build of torch, `--device tpu`: 40-line tracebacks; `--save` where
    nothing can be written: a traceback after the whole bench had run, its figures lost."""
    for device, said in (("cuda:99", "--device cuda:99: "), ("tpu", "--device must be cpu or cuda[:N], got 'tpu'")):
        code, _, err = run_main("bench", "--device", device)
        assert code == 2 and said in err and "Traceback" not in err, err
    (tmp_path / "folder").mkdir()
    (tmp_path / "file").write_text("")
    for save, said in ((tmp_path / "folder", "is a folder"), (tmp_path / "file" / "x.json", "cannot write there")):
        code, out, err = run_main("bench", "--rows", "300", "--configs", "1", "--folds", "2", "--epochs", "2",
                                  "--save", save)
        assert code == 2 and said in err and "Traceback" not in err, err
        assert "serial" not in out  # refused before any timing
