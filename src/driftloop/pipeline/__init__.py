"""The retrain pipeline: incident → newest data → train → gate → deploy → verify or roll back."""
