from decode_models import pair, tiny_lm  # noqa: F401  (fixtures)
