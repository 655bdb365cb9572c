//go:build tools

// Package tools requires the Prometheus server, so `go mod tidy` keeps what it builds with.
package tools

import _ "github.com/prometheus/prometheus/cmd/prometheus"
