"""rl_reason: rule-based RL (GRPO family) for language and vision-language models in JAX."""
import setuptools

setuptools.setup(
    name='rl_reason',
    version='0.1.0',
    description='Rule-based RL (GRPO and family) for LLMs and VLMs in JAX/Flax NNX.',
    packages=setuptools.find_packages(include=['rl_reason', 'rl_reason.*']),
    python_requires='>=3.10',
    install_requires=[
        # Upper bounds at the next untested minor release: the suite's time and the sampler's speed were
        # measured with jax 0.10.2, flax 0.12.8, orbax-checkpoint 0.12.8 and transformers 5.25; the whole
        # suite also passes with jax 0.11.2 (Python >= 3.12 only), flax 0.12.12 and transformers 5.17.
        'jax>=0.10,<0.12',
        'flax>=0.12.8,<0.13',
        'optax',
        'orbax-checkpoint>=0.12,<0.13',
        'transformers>=4.50,<6',
        'tokenizers',
        'safetensors',
        'sentencepiece',
        'tensorflow-datasets',
        'ml-collections',
        'numpy',
        'absl-py',
        'pillow',
        'tqdm',
        'tensorboardX',
        'matplotlib',
        'math-verify[antlr4_13_2]>=0.9',  # math-answer rewards (LaTeX / expression equivalence)
    ],
    extras_require={
        'test': [
            'pytest',
            'pytest-xdist',
            'torch==2.13.0',  # CPU build; an unpinned torch pulls a multi-GB CUDA build.
            'chex',
            'hypothesis',
            'scipy',
        ],
    },
)
