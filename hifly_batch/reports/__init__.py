"""What a run shows people: report.csv, the review page and the progress bar."""
