from kv_models import llama, mistral, qwen2  # noqa: F401  (fixtures)
