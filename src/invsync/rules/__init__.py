"""rules: pure inventory rules (state, ATP, reservations, coalescing); no Faust, no I/O."""
