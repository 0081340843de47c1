import pytest

from tiny_models import QWEN3_TOKENIZER


@pytest.fixture(scope="session")
def qwen3_tokenizer_path():
    if not QWEN3_TOKENIZER.exists():
        pytest.skip("the real Qwen3 tokenizer (../shared/tokenizers/qwen3) is not beside this checkout")
    return QWEN3_TOKENIZER
