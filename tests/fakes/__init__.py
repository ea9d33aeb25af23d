"""Local fake servers that speak real wire protocols; pytest-independent so benchmarks and e2e tests reuse them."""
