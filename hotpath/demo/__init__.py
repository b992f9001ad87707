"""`hotpath demo`: a synthetic fleet with injected incidents, local stand-in receivers and an
on-call who approves what pages ask."""
