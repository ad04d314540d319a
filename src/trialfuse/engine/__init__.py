"""What runs inside a worker: the model families and the fused NN trainer (torch loads here)."""
