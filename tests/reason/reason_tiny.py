import torch


def tiny_llama(vocab: int = 40, d: int = 32, layers: int = 2, seed: int = 0):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=vocab, hidden_size=d, intermediate_size=2 * d, num_hidden_layers=layers, num_attention_heads=4,
                      num_key_value_heads=2, max_position_embeddings=256, tie_word_embeddings=False, pad_token_id=0, eos_token_id=1,
                      bos_token_id=None)  # fmt: skip
    return LlamaForCausalLM(cfg).eval()
