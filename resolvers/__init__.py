"""Entry points: they translate, authorise and call models/; nothing more."""
