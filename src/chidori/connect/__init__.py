"""The Spark Connect front door: one gRPC port where each Chidori user reaches a Spark Connect
server of their own, hosted by Chidori as a job of kind `connect` (docs/connect.md)."""
