"""Sample data (generated fruit images laid out by upload date) and the end-to-end demo."""
