"""`hotpath demo`: a synthetic fleet with injected incidents and local stand-in receivers."""
