"""What several test files share: media writers, synthetic clips and sources, tiny networks, training configs."""
