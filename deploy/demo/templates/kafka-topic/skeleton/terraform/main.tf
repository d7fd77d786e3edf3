resource "kafka_topic" "topic" {
  name               = "${{ values.topic }}"
  partitions         = ${{ values.partitions }}
  replication_factor = 3

  config = {
    "retention.ms"   = ${{ values.retentionDays * 86400000 }}
    "cleanup.policy" = "delete"
  }
}
