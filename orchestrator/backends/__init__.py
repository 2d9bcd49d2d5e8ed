"""One module per backend; each turns a Spec into a Rendered (pure, offline)."""
