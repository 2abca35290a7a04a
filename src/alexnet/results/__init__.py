"""Results people read: a sweep's jobs and statistics beside the paper's claims, its report, the paper's figures, W&B dashboards."""
