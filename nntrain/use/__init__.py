"""Using a trained run: loading its model file, eval, predict, export. Never imports training."""
