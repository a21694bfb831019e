"""Applications built on the toolkit: `occreid demo` (apps/demo)."""
