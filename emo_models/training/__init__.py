"""Training for EMO: data (procedural and real), preprocessing, and the three stages."""
