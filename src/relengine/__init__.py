"""relengine: a relationship-based (Zanzibar-style) authorization engine."""
