"""Framework glue: autograd wrappers and conversions. Imported lazily, only for that framework."""
