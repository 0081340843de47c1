"""The generation engine: decoding settings and thinking modes (`decoding`), the transformers driver (`generate`:
rollouts, cached and resumable), its refill scheduler (`scheduler`) and fixed-slot decode engine (`slots`, with its
CUDA kernels in `kernels` and its fused elementwise chains in `fusion`), token sampling (`sampling`), grouped attention
for CPU (`attention`), forward hooks and head ablation (`hooks`), and the vLLM backend (`vllm_backend`). Imports flow
one way: generate -> scheduler -> slots -> fusion, sampling -> kernels; vllm_backend -> decoding."""
