"""What every release target shares: gate verdicts, the model-version guard, bounded retries."""
