"""Template data generation: intent families x registers x slot pools x noise, seeded.

    from toolforge.data.templates import generate
    examples = generate(n=10000, seed=0)   # identical output for the same seed
"""
from toolforge.data.templates.generator import DEFAULT_N, generate, load_templates
from toolforge.data.templates.noise import normalize
from toolforge.data.templates.pools import GENERATOR_RULES, UNITS, load_pools

__all__ = ["DEFAULT_N", "GENERATOR_RULES", "UNITS", "generate", "load_pools", "load_templates", "normalize"]
