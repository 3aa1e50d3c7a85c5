"""What the tests share: the environment and skip policy, data builders, command runners, the eager reference, trained fixtures. No tests here."""
