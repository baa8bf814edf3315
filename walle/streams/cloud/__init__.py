"""The cloud runtime: the walle engine driven by Kafka topics, in batches (see ``worker``)."""
