"""finops_gql: a GraphQL and legacy-REST gateway for OpenCost cost data."""

__version__ = "0.1.0"
