"""The two-layer model of Sec. 4–5: vectorized ensemble SGD and its theory."""
