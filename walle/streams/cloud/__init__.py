"""The cloud runtime: the walle engine driven by Kafka topics through faust-streaming."""
