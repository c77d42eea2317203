"""payql: a GraphQL payments service for e-commerce."""
