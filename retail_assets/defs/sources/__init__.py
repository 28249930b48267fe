"""Sources: the landing zone folders and the Kafka topic that Bronze reads."""
