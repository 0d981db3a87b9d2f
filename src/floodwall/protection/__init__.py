"""Protection from overload: load shedding, adaptive capacity and the tarpit."""
