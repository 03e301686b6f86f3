"""Policy arena (issue #15): blind pairwise votes between policies, Bradley-Terry ratings, active pairing."""
