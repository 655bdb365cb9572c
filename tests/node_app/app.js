'use strict';
// Tiny OpenTelemetry-instrumented HTTP service for integration tests.
// Configuration (env only):
//   PORT                          listen on 127.0.0.1:PORT (required)
//   OTEL_SERVICE_NAME             service.name resource attribute (read by the SDK)
//   OTEL_EXPORTER_OTLP_ENDPOINT   e.g. http://127.0.0.1:4318 (OTLP/HTTP; /v1/{traces,metrics,logs} appended)
//   APP_LOG_FILE                  pino JSON lines are appended here (default: stdout is NOT used; required)
//   METRIC_EXPORT_MS              metric export interval in ms (default 1000)

// --- OpenTelemetry must be set up before express/pino/http are required. ---
const { NodeSDK } = require('@opentelemetry/sdk-node');
const { getNodeAutoInstrumentations } = require('@opentelemetry/auto-instrumentations-node');
const { OTLPTraceExporter } = require('@opentelemetry/exporter-trace-otlp-http');
const { OTLPMetricExporter } = require('@opentelemetry/exporter-metrics-otlp-http');
const { OTLPLogExporter } = require('@opentelemetry/exporter-logs-otlp-http');
const { PeriodicExportingMetricReader } = require('@opentelemetry/sdk-metrics');
const { BatchLogRecordProcessor } = require('@opentelemetry/sdk-logs');
const { HostMetrics } = require('@opentelemetry/host-metrics');
const { metrics } = require('@opentelemetry/api');

const port = Number.parseInt(process.env.PORT || '', 10);
if (!Number.isInteger(port) || port <= 0) {
  console.error('PORT must be set to a positive integer');
  process.exit(2);
}
const logFile = process.env.APP_LOG_FILE;
if (!logFile) {
  console.error('APP_LOG_FILE must be set');
  process.exit(2);
}
const exportMs = Number.parseInt(process.env.METRIC_EXPORT_MS || '1000', 10) || 1000;

const sdk = new NodeSDK({
  // Exporters read OTEL_EXPORTER_OTLP_ENDPOINT themselves and append /v1/<signal>.
  traceExporter: new OTLPTraceExporter(),
  metricReaders: [
    new PeriodicExportingMetricReader({
      exporter: new OTLPMetricExporter(),
      exportIntervalMillis: exportMs,
      exportTimeoutMillis: Math.min(exportMs, 30000),
    }),
  ],
  // NB: sdk-logs 0.223 takes an options object; `new BatchLogRecordProcessor(exporter)`
  // (the pre-0.200 form) silently exports nothing.
  logRecordProcessors: [
    new BatchLogRecordProcessor({ exporter: new OTLPLogExporter(), scheduledDelayMillis: 500 }),
  ],
  instrumentations: [
    getNodeAutoInstrumentations({
      // Only what this app uses; everything else off to keep it small and quiet.
      '@opentelemetry/instrumentation-fs': { enabled: false },
      '@opentelemetry/instrumentation-dns': { enabled: false },
      '@opentelemetry/instrumentation-net': { enabled: false },
      // The app makes no outgoing calls; this also keeps the OTLP exporters' own POSTs
      // out of http.client.* metrics.
      '@opentelemetry/instrumentation-http': { enabled: true, disableOutgoingRequestInstrumentation: true },
      '@opentelemetry/instrumentation-express': { enabled: true },
      // express 5 uses the standalone `router` package; instrumentation-express already covers it.
      '@opentelemetry/instrumentation-router': { enabled: false },
      '@opentelemetry/instrumentation-pino': { enabled: true }, // trace_id/span_id injection + OTel log records
      '@opentelemetry/instrumentation-runtime-node': { enabled: true, monitoringPrecision: 10 },
    }),
  ],
});
sdk.start();

// host-metrics on the SDK's (now global) meter provider: process.cpu.*, process.memory.usage, system.*.
new HostMetrics({ meterProvider: metrics.getMeterProvider(), name: 'host-metrics' }).start();

// --- Application (required after sdk.start() so instrumentations patch them). ---
const express = require('express');
const pino = require('pino');

const logger = pino(
  { level: 'info' },
  pino.destination({ dest: logFile, append: true, mkdir: true, sync: true })
);

const app = express();

app.get('/items/:id', (req, res) => {
  logger.info({ route: '/items/:id', item_id: req.params.id }, 'get item');
  res.json({ id: req.params.id, name: `item-${req.params.id}` });
});

app.get('/fail', (req, res) => {
  logger.error({ route: '/fail' }, 'request failed on purpose');
  res.status(500).json({ error: 'failed on purpose' });
});

app.get('/slow', (req, res) => {
  setTimeout(() => {
    logger.info({ route: '/slow', delay_ms: 300 }, 'slow request done');
    res.json({ ok: true, delay_ms: 300 });
  }, 300);
});

const server = app.listen(port, '127.0.0.1', () => {
  process.stdout.write(`listening on ${port}\n`);
});

let stopping = false;
async function stop(signal) {
  if (stopping) return;
  stopping = true;
  logger.info({ signal }, 'shutting down');
  server.close();
  server.closeAllConnections();
  try {
    await sdk.shutdown(); // flushes spans, metrics and log records
  } catch (err) {
    console.error('otel shutdown error', err);
  }
  process.exit(0);
}
process.on('SIGTERM', () => stop('SIGTERM'));
process.on('SIGINT', () => stop('SIGINT'));
