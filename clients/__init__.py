"""Typed HTTP clients and the Kafka event contract: the only place URLs and topics are spelled."""
