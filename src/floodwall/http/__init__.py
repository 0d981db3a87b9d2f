"""HTTP vocabulary: what a refused request sees, and path matching."""
