"""Many MLPs trained as one stacked model: the stacked network, its Adam, and the training loop."""
