package redisadapterprom

// HasMetric reports whether the table has a metric of the Stats field.
func HasMetric(field string) bool {
	for _, m := range table {
		if m.field == field {
			return true
		}
	}
	return false
}
