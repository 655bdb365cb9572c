// Command standin is a small, honest stand-in for the services CI cannot build (licence or
// size): Tempo, Loki, Alloy and Grafana. It answers what `python -m stack check` asks of each,
// with the real service's JSON shapes, and says nothing it did not do.
//
//	standin tempo -config.file=/etc/tempo/tempo.yaml
//	standin loki -config.file=/etc/loki/loki.yaml
//	standin alloy run /etc/alloy/config.alloy --storage.path=DIR --server.http.listen-addr=HOST:PORT
//	standin grafana
//
// Each reports as its version the environment variable STANDIN_VERSION ("standin" when unset),
// keeps what it receives in memory only (it writes no file), logs one line per request to
// stdout, and exits 0 on SIGTERM or SIGINT within a second.
//
// tempo: listens where its config file says (server.http_listen_address/http_listen_port,
// default :3200; the OTLP receivers' endpoints under distributor.receivers.otlp.protocols,
// gRPC and HTTP, default 0.0.0.0:4317 and 0.0.0.0:4318, each only when the config names it).
// Counts the spans it receives and keeps recent traces (up to 64 MiB) for /api/traces/<id>.
// Not there: Tempo's own gRPC port, search, TraceQL, the metrics-generator (nothing is
// remote-written to Prometheus), and storage on disk.
//
// loki: listens on server.http_listen_address/http_listen_port (default :3100). Takes pushes
// (JSON, or snappy-compressed protobuf as Loki's clients send), keeps recent lines (up to 64
// MiB), and answers label names and values, and queries of the form
// `{matchers} [|= != |~ !~ "text"]...` (query_range), plus sums of vector(N) (query, as
// Grafana's health check asks). Anything else is answered 400, as Loki answers what it cannot
// parse. Not there: its gRPC port, structured metadata, LogQL parsers and metric queries.
//
// alloy: reads the config file (it must exist) but runs none of its components: it tails no
// file and sends nothing to Loki. It answers /-/ready and /metrics (alloy_build_info).
//
// grafana: listens on GF_SERVER_HTTP_ADDR:GF_SERVER_HTTP_PORT (default :3000), reads every
// datasource in $GF_PATHS_PROVISIONING/datasources/*.yaml (default /etc/grafana/provisioning,
// as in Grafana's image; $VAR and ${VAR} expanded, $$ a literal $, as Grafana does), and
// answers /api/health, each datasource's health check (asking Prometheus `1+1` and Loki
// `vector(1)+vector(1)` as Grafana's own checks do) and its proxy. Users: the admin of
// GF_SECURITY_ADMIN_USER / GF_SECURITY_ADMIN_PASSWORD (or ..._PASSWORD__FILE; default
// admin/admin) by basic auth, and anonymous visitors when GF_AUTH_ANONYMOUS_ENABLED is true.
// It has no database, no UI, no dashboards and no other API.
package main

import (
	"compress/gzip"
	"context"
	"crypto/subtle"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/signal"
	"path"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	collectortrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"gopkg.in/yaml.v3"
)

const usage = "usage: standin tempo|loki|alloy|grafana [the real service's arguments]"

// How much of what it received a stand-in keeps in memory for queries, at most.
const keepBytes = 64 << 20

var version = "standin"

func main() {
	if v := os.Getenv("STANDIN_VERSION"); v != "" {
		version = v
	}
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, usage)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	var err error
	switch mode, args := os.Args[1], os.Args[2:]; mode {
	case "tempo":
		err = runTempo(ctx, args)
	case "loki":
		err = runLoki(ctx, args)
	case "alloy":
		err = runAlloy(ctx, args)
	case "grafana":
		err = runGrafana(ctx, args)
	default:
		err = fmt.Errorf("unknown service %q; %s", mode, usage)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "standin %s: %v\n", os.Args[1], err)
		os.Exit(1)
	}
}

// --- serving, logging, stopping ----------------------------------------------------------------

type recorder struct {
	http.ResponseWriter
	status int
	bytes  int
	note   string // why the request failed, for its log line
}

func (r *recorder) WriteHeader(status int) {
	if r.status == 0 {
		r.status = status
	}
	r.ResponseWriter.WriteHeader(status)
}

func (r *recorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	n, err := r.ResponseWriter.Write(b)
	r.bytes += n
	return n, err
}

func (r *recorder) Flush() {
	if flusher, ok := r.ResponseWriter.(http.Flusher); ok {
		flusher.Flush()
	}
}

var logMu sync.Mutex

func logf(format string, args ...any) {
	logMu.Lock()
	defer logMu.Unlock()
	fmt.Fprintf(os.Stdout, time.Now().UTC().Format(time.RFC3339Nano)+" "+format+"\n", args...)
}

// logged logs one line per request: method, path and query, status, bytes, duration, client.
func logged(service string, handler http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		started := time.Now()
		rec := &recorder{ResponseWriter: w}
		handler.ServeHTTP(rec, r)
		if rec.status == 0 {
			rec.status = http.StatusOK
		}
		note := ""
		if rec.note != "" {
			note = ": " + rec.note
		}
		logf("%s http %s %s %d %dB %s from %s%s", service, r.Method, r.URL.RequestURI(), rec.status, rec.bytes,
			time.Since(started).Round(time.Microsecond), r.RemoteAddr, note)
	})
}

type server struct {
	name     string
	listener net.Listener
	serve    func(net.Listener) error
	stop     func(context.Context)
}

func httpServer(service, name, address string, handler http.Handler) (server, error) {
	listener, err := net.Listen("tcp", address)
	if err != nil {
		return server{}, fmt.Errorf("%s: %w", name, err)
	}
	srv := &http.Server{Handler: logged(service, handler), ReadHeaderTimeout: 10 * time.Second}
	return server{name, listener, srv.Serve, func(ctx context.Context) {
		if srv.Shutdown(ctx) != nil {
			srv.Close()
		}
	}}, nil
}

// serveUntilDone serves every server until ctx is done (a signal: nil, a clean exit) or one
// fails; stopping takes at most 600 ms.
func serveUntilDone(ctx context.Context, service string, servers ...server) error {
	failed := make(chan error, len(servers))
	for _, s := range servers {
		logf("%s listening: %s on %s", service, s.name, s.listener.Addr())
		go func(s server) {
			if err := s.serve(s.listener); err != nil && !errors.Is(err, http.ErrServerClosed) &&
				!errors.Is(err, grpc.ErrServerStopped) {
				failed <- fmt.Errorf("%s: %w", s.name, err)
			}
		}(s)
	}
	var err error
	select {
	case <-ctx.Done():
		logf("%s: signalled, stopping", service)
	case err = <-failed:
	}
	stopCtx, cancel := context.WithTimeout(context.Background(), 600*time.Millisecond)
	defer cancel()
	var wg sync.WaitGroup
	for _, s := range servers {
		wg.Add(1)
		go func(s server) { defer wg.Done(); s.stop(stopCtx) }(s)
	}
	wg.Wait()
	if err == nil {
		logf("%s: stopped", service)
	}
	return err
}

func writeJSON(w http.ResponseWriter, status int, body any) {
	payload, _ := json.Marshal(body)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(payload)
}

func writeText(w http.ResponseWriter, status int, body string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(status)
	io.WriteString(w, body)
}

func notFound(w http.ResponseWriter) { writeText(w, http.StatusNotFound, "404 page not found\n") }

func promLabel(value string) string {
	return strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`).Replace(value)
}

// buildInfo is the JSON Tempo and Loki answer at their buildinfo endpoints (the
// prometheus/common version fields, bare).
func buildInfo(goVersion string) map[string]string {
	return map[string]string{"version": version, "revision": "standin", "branch": "", "buildUser": "",
		"buildDate": "", "goVersion": goVersion}
}

func buildInfoMetric(name string) string {
	return fmt.Sprintf("# HELP %s A metric with a constant '1' value labeled by version, revision, branch, goversion "+
		"from which %s was built, and the goos and goarch for the build.\n# TYPE %s gauge\n"+
		"%s{branch=\"\",goarch=%q,goos=%q,goversion=%q,revision=\"standin\",version=\"%s\"} 1\n",
		name, strings.TrimSuffix(name, "_build_info"), name, name, runtime.GOARCH, runtime.GOOS, runtime.Version(),
		promLabel(version))
}

func counter(name, help string, labels string, value uint64) string {
	return fmt.Sprintf("# HELP %s %s\n# TYPE %s counter\n%s{%s} %d\n", name, help, name, name, labels, value)
}

// readBody reads a request body, gunzipped when its Content-Encoding says gzip.
func readBody(r *http.Request, limit int64) ([]byte, error) {
	var reader io.Reader = http.MaxBytesReader(nil, r.Body, limit)
	if strings.EqualFold(r.Header.Get("Content-Encoding"), "gzip") {
		gz, err := gzip.NewReader(reader)
		if err != nil {
			return nil, err
		}
		defer gz.Close()
		reader = io.LimitReader(gz, limit)
	}
	return io.ReadAll(reader)
}

// configFile parses the -config.file flag (and nothing else) Tempo and Loki are given and
// decodes the YAML file into config.
func configFile(service string, args []string, config any) (string, error) {
	flags := flag.NewFlagSet(service, flag.ContinueOnError)
	file := flags.String("config.file", "", "configuration file")
	expand := flags.Bool("config.expand-env", false, "expand ${VAR} in the configuration file")
	if err := flags.Parse(args); err != nil {
		return "", err
	}
	if flags.NArg() > 0 {
		return "", fmt.Errorf("unexpected arguments %q", flags.Args())
	}
	if *file == "" {
		return "", nil
	}
	text, err := os.ReadFile(*file)
	if err != nil {
		return "", err
	}
	if *expand {
		text = []byte(os.ExpandEnv(string(text)))
	}
	if err := yaml.Unmarshal(text, config); err != nil {
		return "", fmt.Errorf("%s: %w", *file, err)
	}
	return *file, nil
}

type serverConfig struct {
	HTTPListenAddress string `yaml:"http_listen_address"`
	HTTPListenPort    int    `yaml:"http_listen_port"`
}

func (c serverConfig) address(defaultPort int) string {
	port := c.HTTPListenPort
	if port == 0 {
		port = defaultPort
	}
	return net.JoinHostPort(c.HTTPListenAddress, strconv.Itoa(port))
}

// --- tempo ---------------------------------------------------------------------------------------

type otlpProtocol struct {
	Endpoint          string `yaml:"endpoint"`
	MaxRecvMsgSizeMiB int    `yaml:"max_recv_msg_size_mib"`
}

type tempoConfig struct {
	Server      serverConfig `yaml:"server"`
	Distributor struct {
		Receivers struct {
			OTLP *struct {
				Protocols map[string]*otlpProtocol `yaml:"protocols"`
			} `yaml:"otlp"`
		} `yaml:"receivers"`
	} `yaml:"distributor"`
}

// traceStore keeps the spans of recent traces, by trace id, dropping the oldest traces past
// keepBytes.
type traceStore struct {
	mu     sync.Mutex
	traces map[[16]byte][]*tracepb.ResourceSpans
	order  [][16]byte
	size   map[[16]byte]int
	total  int

	spans, bytes, batches atomic.Uint64
}

func (s *traceStore) receive(resourceSpans []*tracepb.ResourceSpans, size int) {
	s.batches.Add(1)
	s.bytes.Add(uint64(size))
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, rs := range resourceSpans {
		for _, ss := range rs.ScopeSpans {
			s.spans.Add(uint64(len(ss.Spans)))
			byTrace := map[[16]byte][]*tracepb.Span{}
			var ids [][16]byte
			for _, span := range ss.Spans {
				var id [16]byte
				copy(id[16-min(16, len(span.TraceId)):], span.TraceId)
				if _, seen := byTrace[id]; !seen {
					ids = append(ids, id)
				}
				byTrace[id] = append(byTrace[id], span)
			}
			for _, id := range ids {
				part := &tracepb.ResourceSpans{Resource: rs.Resource, SchemaUrl: rs.SchemaUrl,
					ScopeSpans: []*tracepb.ScopeSpans{{Scope: ss.Scope, SchemaUrl: ss.SchemaUrl, Spans: byTrace[id]}}}
				if _, known := s.traces[id]; !known {
					s.order = append(s.order, id)
				}
				n := proto.Size(part)
				s.traces[id] = append(s.traces[id], part)
				s.size[id] += n
				s.total += n
			}
		}
	}
	for s.total > keepBytes && len(s.order) > 0 {
		oldest := s.order[0]
		s.order = s.order[1:]
		s.total -= s.size[oldest]
		delete(s.traces, oldest)
		delete(s.size, oldest)
	}
}

func (s *traceStore) trace(id [16]byte) []*tracepb.ResourceSpans {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]*tracepb.ResourceSpans(nil), s.traces[id]...)
}

type traceReceiver struct {
	collectortrace.UnimplementedTraceServiceServer
	store *traceStore
}

func (t *traceReceiver) Export(ctx context.Context, request *collectortrace.ExportTraceServiceRequest) (
	*collectortrace.ExportTraceServiceResponse, error) {
	t.store.receive(request.ResourceSpans, proto.Size(request))
	return &collectortrace.ExportTraceServiceResponse{}, nil
}

func runTempo(ctx context.Context, args []string) error {
	var config tempoConfig
	file, err := configFile("tempo", args, &config)
	if err != nil {
		return err
	}
	store := &traceStore{traces: map[[16]byte][]*tracepb.ResourceSpans{}, size: map[[16]byte]int{}}
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) { notFound(w) })
	mux.HandleFunc("GET /ready", func(w http.ResponseWriter, r *http.Request) { writeText(w, 200, "ready") })
	mux.HandleFunc("GET /api/echo", func(w http.ResponseWriter, r *http.Request) { writeText(w, 200, "echo") })
	mux.HandleFunc("GET /api/status/buildinfo", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, 200, buildInfo(runtime.Version()))
	})
	mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, r *http.Request) {
		tenant := `tenant="single-tenant"`
		writeText(w, 200, buildInfoMetric("tempo_build_info")+
			counter("tempo_distributor_spans_received_total", "The total number of spans received per tenant",
				tenant, store.spans.Load())+
			counter("tempo_distributor_bytes_received_total", "The total number of proto bytes received per tenant",
				tenant, store.bytes.Load())+
			counter("tempo_distributor_push_duration_seconds_count", "Records the amount of time to push a batch "+
				"to the ingester.", "", store.batches.Load()))
	})
	mux.HandleFunc("GET /api/traces/{id}", func(w http.ResponseWriter, r *http.Request) {
		raw := strings.ToLower(r.PathValue("id"))
		if len(raw) > 32 || len(raw) == 0 {
			writeText(w, 400, "invalid trace id")
			return
		}
		decoded, err := hex.DecodeString(strings.Repeat("0", 32-len(raw)) + raw)
		if err != nil {
			writeText(w, 400, "invalid trace id")
			return
		}
		var id [16]byte
		copy(id[:], decoded)
		batches := store.trace(id)
		if len(batches) == 0 {
			writeText(w, 404, "trace not found")
			return
		}
		if strings.Contains(r.Header.Get("Accept"), "application/protobuf") {
			// tempopb.Trace is `repeated ResourceSpans batches = 1`: TracesData's wire format.
			payload, _ := proto.Marshal(&tracepb.TracesData{ResourceSpans: batches})
			w.Header().Set("Content-Type", "application/protobuf")
			w.Write(payload)
			return
		}
		encoded := make([]json.RawMessage, len(batches))
		for i, batch := range batches {
			encoded[i], _ = protojson.Marshal(batch)
		}
		writeJSON(w, 200, map[string]any{"batches": encoded})
	})
	receiver := &traceReceiver{store: store}
	otlpHTTP := func(w http.ResponseWriter, r *http.Request) {
		body, err := readBody(r, 64<<20)
		if err != nil {
			writeText(w, 400, err.Error())
			return
		}
		request := &collectortrace.ExportTraceServiceRequest{}
		asJSON := strings.HasPrefix(r.Header.Get("Content-Type"), "application/json")
		if asJSON {
			err = protojson.Unmarshal(body, request)
		} else {
			err = proto.Unmarshal(body, request)
		}
		if err != nil {
			writeText(w, 400, err.Error())
			return
		}
		response, _ := receiver.Export(r.Context(), request)
		if asJSON {
			payload, _ := protojson.Marshal(response)
			w.Header().Set("Content-Type", "application/json")
			w.Write(payload)
			return
		}
		payload, _ := proto.Marshal(response)
		w.Header().Set("Content-Type", "application/x-protobuf")
		w.Write(payload)
	}

	api, err := httpServer("tempo", "http", config.Server.address(3200), mux)
	if err != nil {
		return err
	}
	servers := []server{api}
	if otlp := config.Distributor.Receivers.OTLP; otlp != nil {
		if protocol, named := otlp.Protocols["grpc"]; named {
			if protocol == nil {
				protocol = &otlpProtocol{}
			}
			address := protocol.Endpoint
			if address == "" {
				address = "0.0.0.0:4317"
			}
			listener, err := net.Listen("tcp", address)
			if err != nil {
				return fmt.Errorf("otlp grpc: %w", err)
			}
			size := 4
			if protocol.MaxRecvMsgSizeMiB > 0 {
				size = protocol.MaxRecvMsgSizeMiB
			}
			grpcServer := grpc.NewServer(grpc.MaxRecvMsgSize(size<<20), grpc.UnaryInterceptor(
				func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
					started := time.Now()
					response, err := handler(ctx, req)
					spans := 0
					if export, ok := req.(*collectortrace.ExportTraceServiceRequest); ok {
						for _, rs := range export.ResourceSpans {
							for _, ss := range rs.ScopeSpans {
								spans += len(ss.Spans)
							}
						}
					}
					logf("tempo grpc %s %d spans err=%v %s", info.FullMethod, spans, err,
						time.Since(started).Round(time.Microsecond))
					return response, err
				}))
			collectortrace.RegisterTraceServiceServer(grpcServer, receiver)
			servers = append(servers, server{"otlp grpc", listener, grpcServer.Serve, func(ctx context.Context) {
				done := make(chan struct{})
				go func() { grpcServer.GracefulStop(); close(done) }()
				select {
				case <-done:
				case <-ctx.Done():
					grpcServer.Stop()
				}
			}})
		}
		if protocol, named := otlp.Protocols["http"]; named {
			address := "0.0.0.0:4318"
			if protocol != nil && protocol.Endpoint != "" {
				address = protocol.Endpoint
			}
			otlpMux := http.NewServeMux()
			otlpMux.HandleFunc("POST /v1/traces", otlpHTTP)
			otlpMux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) { notFound(w) })
			s, err := httpServer("tempo", "otlp http", address, otlpMux)
			if err != nil {
				return err
			}
			servers = append(servers, s)
		}
	}
	logf("tempo stand-in %s (config %q): keeps recent traces in memory only; no search, no metrics-generator, "+
		"no storage", version, file)
	return serveUntilDone(ctx, "tempo", servers...)
}

// --- loki ----------------------------------------------------------------------------------------

type lokiConfig struct {
	AuthEnabled *bool        `yaml:"auth_enabled"`
	Server      serverConfig `yaml:"server"`
}

type stream struct {
	key    string
	tenant string
	labels map[string]string
}

type logEntry struct {
	stream *stream
	ts     int64
	line   string
}

type logStore struct {
	mu      sync.Mutex
	streams map[string]*stream // by tenant and canonical labels
	entries []logEntry         // in arrival order
	total   int
	lines   map[string]uint64 // by tenant
	bytes   map[string]uint64
}

func canonicalLabels(labels map[string]string) string {
	names := make([]string, 0, len(labels))
	for name := range labels {
		names = append(names, name)
	}
	sort.Strings(names)
	parts := make([]string, len(names))
	for i, name := range names {
		parts[i] = name + "=" + strconv.Quote(labels[name])
	}
	return "{" + strings.Join(parts, ", ") + "}"
}

type pushedStream struct {
	labels  map[string]string
	entries []logEntry
}

func (s *logStore) push(tenant string, streams []pushedStream) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, pushed := range streams {
		key := tenant + "\x00" + canonicalLabels(pushed.labels)
		st := s.streams[key]
		if st == nil {
			st = &stream{key: key, tenant: tenant, labels: pushed.labels}
			s.streams[key] = st
		}
		for _, entry := range pushed.entries {
			entry.stream = st
			s.entries = append(s.entries, entry)
			s.total += len(entry.line) + 32
			s.lines[tenant]++
			s.bytes[tenant] += uint64(len(entry.line))
		}
	}
	if s.total > keepBytes {
		drop := 0
		for s.total > keepBytes*3/4 && drop < len(s.entries) {
			s.total -= len(s.entries[drop].line) + 32
			drop++
		}
		s.entries = append([]logEntry(nil), s.entries[drop:]...)
	}
}

// parsePushLabels reads a stream's labels as Loki's push carries them: `{name="value", ...}`.
func parsePushLabels(text string) (map[string]string, error) {
	matchers, rest, err := parseSelector(strings.TrimSpace(text))
	if err != nil {
		return nil, err
	}
	if strings.TrimSpace(rest) != "" {
		return nil, fmt.Errorf("unexpected %q after the labels", rest)
	}
	labels := map[string]string{}
	for _, m := range matchers {
		if m.op != "=" {
			return nil, fmt.Errorf("labels must be name=\"value\"")
		}
		labels[m.name] = m.value
	}
	return labels, nil
}

func decodeJSONPush(body []byte) ([]pushedStream, error) {
	var request struct {
		Streams []struct {
			Stream map[string]string   `json:"stream"`
			Values [][]json.RawMessage `json:"values"`
		} `json:"streams"`
	}
	if err := json.Unmarshal(body, &request); err != nil {
		return nil, err
	}
	var streams []pushedStream
	for _, s := range request.Streams {
		pushed := pushedStream{labels: s.Stream}
		for _, value := range s.Values {
			if len(value) < 2 {
				return nil, errors.New("a value is [timestamp, line]")
			}
			var ts, line string
			if err := json.Unmarshal(value[0], &ts); err != nil {
				return nil, fmt.Errorf("timestamp: %w", err)
			}
			if err := json.Unmarshal(value[1], &line); err != nil {
				return nil, fmt.Errorf("line: %w", err)
			}
			nanos, err := strconv.ParseInt(ts, 10, 64)
			if err != nil {
				return nil, fmt.Errorf("timestamp %q: %w", ts, err)
			}
			pushed.entries = append(pushed.entries, logEntry{ts: nanos, line: line})
		}
		streams = append(streams, pushed)
	}
	return streams, nil
}

// protoFields calls each with every field of a protobuf message: its number, wire type, and
// its bytes (for length-delimited fields) or varint value.
func protoFields(message []byte, each func(number protowire.Number, kind protowire.Type, data []byte, value uint64) error) error {
	for len(message) > 0 {
		number, kind, n := protowire.ConsumeTag(message)
		if n < 0 {
			return protowire.ParseError(n)
		}
		message = message[n:]
		var data []byte
		var value uint64
		switch kind {
		case protowire.BytesType:
			data, n = protowire.ConsumeBytes(message)
		case protowire.VarintType:
			value, n = protowire.ConsumeVarint(message)
		default:
			n = protowire.ConsumeFieldValue(number, kind, message)
		}
		if n < 0 {
			return protowire.ParseError(n)
		}
		message = message[n:]
		if err := each(number, kind, data, value); err != nil {
			return err
		}
	}
	return nil
}

// decodeProtoPush reads logproto.PushRequest (github.com/grafana/loki/pkg/push, push.proto):
// streams = 1 {labels = 1, entries = 2 {timestamp = 1 {seconds = 1, nanos = 2}, line = 2}}.
func decodeProtoPush(body []byte) ([]pushedStream, error) {
	var streams []pushedStream
	err := protoFields(body, func(number protowire.Number, kind protowire.Type, data []byte, _ uint64) error {
		if number != 1 || kind != protowire.BytesType {
			return nil
		}
		var pushed pushedStream
		var labelText string
		err := protoFields(data, func(number protowire.Number, kind protowire.Type, data []byte, _ uint64) error {
			switch {
			case number == 1 && kind == protowire.BytesType:
				labelText = string(data)
			case number == 2 && kind == protowire.BytesType:
				var entry logEntry
				var seconds, nanos int64
				err := protoFields(data, func(number protowire.Number, kind protowire.Type, data []byte, _ uint64) error {
					switch {
					case number == 1 && kind == protowire.BytesType:
						return protoFields(data, func(number protowire.Number, kind protowire.Type, _ []byte, value uint64) error {
							if kind == protowire.VarintType && number == 1 {
								seconds = int64(value)
							} else if kind == protowire.VarintType && number == 2 {
								nanos = int64(int32(value))
							}
							return nil
						})
					case number == 2 && kind == protowire.BytesType:
						entry.line = string(data)
					}
					return nil
				})
				if err != nil {
					return err
				}
				entry.ts = seconds*1e9 + nanos
				pushed.entries = append(pushed.entries, entry)
			}
			return nil
		})
		if err != nil {
			return err
		}
		if pushed.labels, err = parsePushLabels(labelText); err != nil {
			return fmt.Errorf("stream labels %q: %w", labelText, err)
		}
		streams = append(streams, pushed)
		return nil
	})
	return streams, err
}

// snappyDecode decodes snappy's block format (what Loki's push takes; no framing).
func snappyDecode(src []byte) ([]byte, error) {
	corrupt := errors.New("snappy: corrupt input")
	length, n := binary.Uvarint(src)
	if n <= 0 || length > 256<<20 {
		return nil, corrupt
	}
	dst := make([]byte, 0, length)
	for s := n; s < len(src); {
		tag := src[s]
		var size, offset int
		switch tag & 3 {
		case 0:
			size = int(tag >> 2)
			s++
			if size >= 60 {
				extra := size - 59
				if s+extra > len(src) {
					return nil, corrupt
				}
				size = 0
				for i := 0; i < extra; i++ {
					size |= int(src[s+i]) << (8 * i)
				}
				s += extra
			}
			size++
			if size <= 0 || s+size > len(src) {
				return nil, corrupt
			}
			dst = append(dst, src[s:s+size]...)
			s += size
			continue
		case 1:
			if s+2 > len(src) {
				return nil, corrupt
			}
			size = 4 + int(tag>>2)&7
			offset = int(tag&0xe0)<<3 | int(src[s+1])
			s += 2
		case 2:
			if s+3 > len(src) {
				return nil, corrupt
			}
			size = 1 + int(tag>>2)
			offset = int(binary.LittleEndian.Uint16(src[s+1:]))
			s += 3
		case 3:
			if s+5 > len(src) {
				return nil, corrupt
			}
			size = 1 + int(tag>>2)
			offset = int(binary.LittleEndian.Uint32(src[s+1:]))
			s += 5
		}
		if offset <= 0 || offset > len(dst) || uint64(len(dst)+size) > length {
			return nil, corrupt
		}
		for i := 0; i < size; i++ {
			dst = append(dst, dst[len(dst)-offset])
		}
	}
	if uint64(len(dst)) != length {
		return nil, corrupt
	}
	return dst, nil
}

// LogQL, the part the stand-in answers.

type matcher struct {
	name, op, value string
	re              *regexp.Regexp
}

func (m matcher) matches(labels map[string]string) bool {
	value := labels[m.name]
	switch m.op {
	case "=":
		return value == m.value
	case "!=":
		return value != m.value
	case "=~":
		return m.re.MatchString(value)
	default:
		return !m.re.MatchString(value)
	}
}

type lineFilter struct {
	op, text string
	re       *regexp.Regexp
}

func (f lineFilter) keeps(line string) bool {
	switch f.op {
	case "|=":
		return strings.Contains(line, f.text)
	case "!=":
		return !strings.Contains(line, f.text)
	case "|~":
		return f.re.MatchString(line)
	default:
		return !f.re.MatchString(line)
	}
}

var labelName = regexp.MustCompile(`^[a-zA-Z_][a-zA-Z0-9_]*`)

// parseString reads a LogQL string at the start of text: "..." with Go escapes, or `...`.
func parseString(text string) (string, string, error) {
	if strings.HasPrefix(text, "`") {
		end := strings.Index(text[1:], "`")
		if end < 0 {
			return "", "", errors.New("unterminated raw string")
		}
		return text[1 : end+1], text[end+2:], nil
	}
	if !strings.HasPrefix(text, `"`) {
		return "", "", fmt.Errorf("expected a string at %q", text)
	}
	for i := 1; i < len(text); i++ {
		switch text[i] {
		case '\\':
			i++
		case '"':
			value, err := strconv.Unquote(text[:i+1])
			return value, text[i+1:], err
		}
	}
	return "", "", errors.New("unterminated string")
}

func parseSelector(text string) ([]matcher, string, error) {
	if !strings.HasPrefix(text, "{") {
		return nil, "", errors.New("a query starts with a stream selector {...}")
	}
	rest := strings.TrimSpace(text[1:])
	var matchers []matcher
	for !strings.HasPrefix(rest, "}") {
		name := labelName.FindString(rest)
		if name == "" {
			return nil, "", fmt.Errorf("expected a label name at %q", rest)
		}
		rest = strings.TrimSpace(rest[len(name):])
		op := ""
		for _, candidate := range []string{"=~", "!~", "!=", "="} {
			if strings.HasPrefix(rest, candidate) {
				op = candidate
				break
			}
		}
		if op == "" {
			return nil, "", fmt.Errorf("expected =, !=, =~ or !~ at %q", rest)
		}
		value, after, err := parseString(strings.TrimSpace(rest[len(op):]))
		if err != nil {
			return nil, "", err
		}
		m := matcher{name: name, op: op, value: value}
		if op == "=~" || op == "!~" {
			if m.re, err = regexp.Compile("^(?:" + value + ")$"); err != nil {
				return nil, "", err
			}
		}
		matchers = append(matchers, m)
		rest = strings.TrimSpace(after)
		if strings.HasPrefix(rest, ",") {
			rest = strings.TrimSpace(rest[1:])
		}
	}
	return matchers, rest[1:], nil
}

type logQuery struct {
	matchers []matcher
	filters  []lineFilter
}

func parseLogQuery(text string) (logQuery, error) {
	var q logQuery
	matchers, rest, err := parseSelector(strings.TrimSpace(text))
	if err != nil {
		return q, err
	}
	q.matchers = matchers
	if len(matchers) == 0 {
		return q, errors.New("queries require at least one label matcher")
	}
	for rest = strings.TrimSpace(rest); rest != ""; rest = strings.TrimSpace(rest) {
		if len(rest) < 2 {
			return q, fmt.Errorf("unexpected %q", rest)
		}
		op := rest[:2]
		if op != "|=" && op != "!=" && op != "|~" && op != "!~" {
			return q, fmt.Errorf("the stand-in answers only line filters (|= != |~ !~), not %q", rest)
		}
		value, after, err := parseString(strings.TrimSpace(rest[2:]))
		if err != nil {
			return q, err
		}
		f := lineFilter{op: op, text: value}
		if op == "|~" || op == "!~" {
			if f.re, err = regexp.Compile(value); err != nil {
				return q, err
			}
		}
		q.filters = append(q.filters, f)
		rest = after
	}
	return q, nil
}

var vectorTerm = regexp.MustCompile(`^\s*vector\(\s*([-+]?[0-9.eE+]+)\s*\)\s*`)

// vectorSum evaluates `vector(a) + vector(b) + ...`; ok is false for anything else.
func vectorSum(text string) (float64, bool) {
	sum, rest := 0.0, text
	for {
		match := vectorTerm.FindStringSubmatch(rest)
		if match == nil {
			return 0, false
		}
		value, err := strconv.ParseFloat(match[1], 64)
		if err != nil {
			return 0, false
		}
		sum += value
		rest = rest[len(match[0]):]
		if rest == "" {
			return sum, true
		}
		if !strings.HasPrefix(rest, "+") {
			return 0, false
		}
		rest = rest[1:]
	}
}

// lokiTime reads a time parameter as Loki does: float seconds, RFC3339, or an integer taken as
// seconds up to 10 digits and as nanoseconds beyond.
func lokiTime(value string, fallback time.Time) (time.Time, error) {
	if value == "" {
		return fallback, nil
	}
	if strings.Contains(value, ".") {
		if seconds, err := strconv.ParseFloat(value, 64); err == nil {
			whole, fraction := math.Modf(seconds)
			return time.Unix(int64(whole), int64(fraction*1e9)), nil
		}
	}
	number, err := strconv.ParseInt(value, 10, 64)
	if err != nil {
		if t, err := time.Parse(time.RFC3339Nano, value); err == nil {
			return t, nil
		}
		return time.Time{}, fmt.Errorf("cannot parse %q to a valid timestamp", value)
	}
	if len(value) <= 10 {
		return time.Unix(number, 0), nil
	}
	return time.Unix(0, number), nil
}

func (s *logStore) select_(tenant string, q logQuery, start, end int64, limit int, forward bool) []map[string]any {
	s.mu.Lock()
	var found []logEntry
	for _, entry := range s.entries {
		if entry.stream.tenant != tenant || entry.ts < start || entry.ts >= end {
			continue
		}
		keep := true
		for _, m := range q.matchers {
			keep = keep && m.matches(entry.stream.labels)
		}
		for _, f := range q.filters {
			keep = keep && f.keeps(entry.line)
		}
		if keep {
			found = append(found, entry)
		}
	}
	s.mu.Unlock()
	sort.SliceStable(found, func(i, j int) bool {
		if forward {
			return found[i].ts < found[j].ts
		}
		return found[i].ts > found[j].ts
	})
	if len(found) > limit {
		found = found[:limit]
	}
	var order []*stream
	values := map[*stream][][2]string{}
	for _, entry := range found {
		if _, seen := values[entry.stream]; !seen {
			order = append(order, entry.stream)
		}
		values[entry.stream] = append(values[entry.stream], [2]string{strconv.FormatInt(entry.ts, 10), entry.line})
	}
	result := make([]map[string]any, 0, len(order))
	for _, st := range order {
		result = append(result, map[string]any{"stream": st.labels, "values": values[st]})
	}
	return result
}

func (s *logStore) labels(tenant, name string, start, end int64) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	seen := map[string]bool{}
	for _, entry := range s.entries {
		if entry.stream.tenant != tenant || entry.ts < start || entry.ts > end {
			continue
		}
		if name == "" {
			for label := range entry.stream.labels {
				seen[label] = true
			}
		} else if value, ok := entry.stream.labels[name]; ok {
			seen[value] = true
		}
	}
	found := make([]string, 0, len(seen))
	for value := range seen {
		found = append(found, value)
	}
	sort.Strings(found)
	return found
}

func runLoki(ctx context.Context, args []string) error {
	var config lokiConfig
	file, err := configFile("loki", args, &config)
	if err != nil {
		return err
	}
	authEnabled := config.AuthEnabled == nil || *config.AuthEnabled // Loki's default: true
	store := &logStore{streams: map[string]*stream{}, lines: map[string]uint64{}, bytes: map[string]uint64{}}
	lokiError := func(w http.ResponseWriter, status int, message string) {
		writeText(w, status, message+"\n")
	}
	tenantOf := func(w http.ResponseWriter, r *http.Request) (string, bool) {
		if !authEnabled {
			return "fake", true
		}
		if tenant := r.Header.Get("X-Scope-OrgID"); tenant != "" {
			return tenant, true
		}
		lokiError(w, http.StatusUnauthorized, "no org id")
		return "", false
	}
	form := func(r *http.Request) url.Values {
		r.ParseForm()
		return r.Form
	}
	timeRange := func(values url.Values, lookback time.Duration) (int64, int64, error) {
		end, err := lokiTime(values.Get("end"), time.Now())
		if err != nil {
			return 0, 0, err
		}
		start, err := lokiTime(values.Get("start"), end.Add(-lookback))
		if err != nil {
			return 0, 0, err
		}
		return start.UnixNano(), end.UnixNano(), nil
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) { notFound(w) })
	mux.HandleFunc("GET /ready", func(w http.ResponseWriter, r *http.Request) { writeText(w, 200, "ready\n") })
	mux.HandleFunc("GET /loki/api/v1/status/buildinfo", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, 200, buildInfo("")) // Loki 2.9 answers an empty goVersion
	})
	mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, r *http.Request) {
		store.mu.Lock()
		var lines, bytes strings.Builder
		tenants := make([]string, 0, len(store.lines))
		for tenant := range store.lines {
			tenants = append(tenants, tenant)
		}
		sort.Strings(tenants)
		for _, tenant := range tenants {
			fmt.Fprintf(&lines, "loki_distributor_lines_received_total{tenant=\"%s\"} %d\n", promLabel(tenant), store.lines[tenant])
			fmt.Fprintf(&bytes, "loki_distributor_bytes_received_total{tenant=\"%s\"} %d\n", promLabel(tenant), store.bytes[tenant])
		}
		store.mu.Unlock()
		writeText(w, 200, buildInfoMetric("loki_build_info")+
			"# HELP loki_distributor_lines_received_total The total number of lines received per tenant\n"+
			"# TYPE loki_distributor_lines_received_total counter\n"+lines.String()+
			"# HELP loki_distributor_bytes_received_total The total number of uncompressed bytes received per tenant\n"+
			"# TYPE loki_distributor_bytes_received_total counter\n"+bytes.String())
	})
	mux.HandleFunc("POST /loki/api/v1/push", func(w http.ResponseWriter, r *http.Request) {
		tenant, ok := tenantOf(w, r)
		if !ok {
			return
		}
		body, err := readBody(r, 64<<20)
		if err != nil {
			lokiError(w, 400, err.Error())
			return
		}
		var streams []pushedStream
		if strings.HasPrefix(r.Header.Get("Content-Type"), "application/json") {
			streams, err = decodeJSONPush(body)
		} else if body, err = snappyDecode(body); err == nil {
			streams, err = decodeProtoPush(body)
		}
		if err != nil {
			lokiError(w, 400, "loghttp.ParsePushRequest: "+err.Error())
			return
		}
		for _, s := range streams {
			if len(s.labels) == 0 {
				lokiError(w, 400, "error at least one label pair is required per stream")
				return
			}
		}
		store.push(tenant, streams)
		w.WriteHeader(http.StatusNoContent)
	})
	labelsHandler := func(name func(*http.Request) string) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			tenant, ok := tenantOf(w, r)
			if !ok {
				return
			}
			start, end, err := timeRange(form(r), 6*time.Hour)
			if err != nil {
				lokiError(w, 400, err.Error())
				return
			}
			writeJSON(w, 200, map[string]any{"status": "success", "data": store.labels(tenant, name(r), start, end)})
		}
	}
	mux.HandleFunc("/loki/api/v1/labels", labelsHandler(func(*http.Request) string { return "" }))
	mux.HandleFunc("/loki/api/v1/label/{name}/values", labelsHandler(func(r *http.Request) string {
		return r.PathValue("name")
	}))
	query := func(w http.ResponseWriter, r *http.Request, instant bool) {
		tenant, ok := tenantOf(w, r)
		if !ok {
			return
		}
		values := form(r)
		text := values.Get("query")
		if sum, ok := vectorSum(text); ok && instant {
			at, err := lokiTime(values.Get("time"), time.Now())
			if err != nil {
				lokiError(w, 400, err.Error())
				return
			}
			writeJSON(w, 200, map[string]any{"status": "success", "data": map[string]any{
				"resultType": "vector", "stats": map[string]any{},
				"result": []any{map[string]any{"metric": map[string]string{},
					"value": []any{float64(at.UnixMilli()) / 1000, strconv.FormatFloat(sum, 'f', -1, 64)}}}}})
			return
		}
		q, err := parseLogQuery(text)
		if err != nil {
			lokiError(w, 400, "parse error : "+err.Error())
			return
		}
		if instant {
			lokiError(w, 400, "log queries are not supported as an instant query type, please change your query "+
				"to a range query type")
			return
		}
		limit := 100
		if l := values.Get("limit"); l != "" {
			if limit, err = strconv.Atoi(l); err != nil || limit <= 0 {
				lokiError(w, 400, "limit must be a positive value")
				return
			}
		}
		start, end, err := timeRange(values, time.Hour)
		if err != nil {
			lokiError(w, 400, err.Error())
			return
		}
		forward := strings.EqualFold(values.Get("direction"), "forward")
		writeJSON(w, 200, map[string]any{"status": "success", "data": map[string]any{
			"resultType": "streams", "stats": map[string]any{},
			"result": store.select_(tenant, q, start, end, limit, forward)}})
	}
	mux.HandleFunc("/loki/api/v1/query_range", func(w http.ResponseWriter, r *http.Request) { query(w, r, false) })
	mux.HandleFunc("/loki/api/v1/query", func(w http.ResponseWriter, r *http.Request) { query(w, r, true) })

	api, err := httpServer("loki", "http", config.Server.address(3100), mux)
	if err != nil {
		return err
	}
	logf("loki stand-in %s (config %q, auth_enabled %v): keeps recent lines in memory only; answers stream "+
		"selectors with line filters, and sums of vector()", version, file, authEnabled)
	return serveUntilDone(ctx, "loki", api)
}

// --- alloy ---------------------------------------------------------------------------------------

func runAlloy(ctx context.Context, args []string) error {
	if len(args) == 0 || args[0] != "run" {
		return errors.New("usage: standin alloy run CONFIG [--storage.path=DIR] [--server.http.listen-addr=HOST:PORT]")
	}
	flags := flag.NewFlagSet("alloy run", flag.ContinueOnError)
	storage := flags.String("storage.path", "data-alloy/", "where Alloy would keep its data (the stand-in writes none)")
	listen := flags.String("server.http.listen-addr", "127.0.0.1:12345", "address to listen on")
	flags.String("stability.level", "generally-available", "accepted, unused")
	var positional []string
	rest := args[1:]
	for len(rest) > 0 { // Alloy (cobra) takes flags before and after the config path
		if err := flags.Parse(rest); err != nil {
			return err
		}
		if flags.NArg() == 0 {
			break
		}
		positional = append(positional, flags.Arg(0))
		rest = flags.Args()[1:]
	}
	if len(positional) != 1 {
		return fmt.Errorf("expected one config path, got %q", positional)
	}
	config, err := os.ReadFile(positional[0])
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) { notFound(w) })
	mux.HandleFunc("GET /-/ready", func(w http.ResponseWriter, r *http.Request) { writeText(w, 200, "Alloy is ready.\n") })
	mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, r *http.Request) {
		writeText(w, 200, fmt.Sprintf("# HELP alloy_build_info A metric with a constant '1' value labeled by version, "+
			"revision, branch, goversion from which alloy was built, and the goos and goarch for the build.\n"+
			"# TYPE alloy_build_info gauge\nalloy_build_info{branch=\"\",goarch=%q,goos=%q,goversion=%q,"+
			"revision=\"standin\",tags=\"\",version=\"%s\"} 1\n", runtime.GOARCH, runtime.GOOS, runtime.Version(),
			promLabel(version)))
	})
	api, err := httpServer("alloy", "http", *listen, mux)
	if err != nil {
		return err
	}
	logf("alloy stand-in %s: read %s (%d bytes) but runs none of its components: no file is tailed, nothing is "+
		"sent to Loki; --storage.path %s is not written", version, positional[0], len(config), *storage)
	return serveUntilDone(ctx, "alloy", api)
}

// --- grafana -------------------------------------------------------------------------------------

type datasource struct {
	Name           string         `yaml:"name"`
	Type           string         `yaml:"type"`
	UID            string         `yaml:"uid"`
	URL            string         `yaml:"url"`
	Access         string         `yaml:"access"`
	BasicAuth      bool           `yaml:"basicAuth"`
	BasicAuthUser  string         `yaml:"basicAuthUser"`
	JSONData       map[string]any `yaml:"jsonData"`
	SecureJSONData map[string]any `yaml:"secureJsonData"`
}

var envReference = regexp.MustCompile(`\$\$|\$\{([a-zA-Z_][a-zA-Z0-9_]*)\}|\$([a-zA-Z_][a-zA-Z0-9_]*)`)

// expandEnv expands $VAR and ${VAR} as Grafana's provisioning does; $$ is a literal $.
func expandEnv(text string) string {
	return envReference.ReplaceAllStringFunc(text, func(reference string) string {
		if reference == "$$" {
			return "$"
		}
		return os.Getenv(strings.Trim(reference, "${}"))
	})
}

func expandAll(value any) any {
	switch v := value.(type) {
	case string:
		return expandEnv(v)
	case map[string]any:
		for key, item := range v {
			v[key] = expandAll(item)
		}
	case []any:
		for i, item := range v {
			v[i] = expandAll(item)
		}
	}
	return value
}

func readDatasources(directory string) (map[string]datasource, error) {
	files, err := filepath.Glob(filepath.Join(directory, "*.y*ml"))
	if err != nil {
		return nil, err
	}
	sort.Strings(files)
	byUID := map[string]datasource{}
	for _, file := range files {
		text, err := os.ReadFile(file)
		if err != nil {
			return nil, err
		}
		var document struct {
			APIVersion  int          `yaml:"apiVersion"`
			Datasources []datasource `yaml:"datasources"`
		}
		if err := yaml.Unmarshal(text, &document); err != nil {
			return nil, fmt.Errorf("%s: %w", file, err)
		}
		for _, ds := range document.Datasources {
			ds.Name, ds.Type, ds.UID, ds.URL = expandEnv(ds.Name), expandEnv(ds.Type), expandEnv(ds.UID), expandEnv(ds.URL)
			ds.BasicAuthUser = expandEnv(ds.BasicAuthUser)
			expandAll(ds.JSONData)
			expandAll(ds.SecureJSONData)
			if ds.UID == "" {
				return nil, fmt.Errorf("%s: datasource %q has no uid (the stand-in makes none up)", file, ds.Name)
			}
			byUID[ds.UID] = ds
		}
	}
	return byUID, nil
}

func envOr(name, fallback string) string {
	if value := os.Getenv(name); value != "" {
		return value
	}
	return fallback
}

// grafanaSetting reads GF_<NAME>, or the file GF_<NAME>__FILE names, as Grafana does.
func grafanaSetting(name, fallback string) (string, error) {
	if file := os.Getenv(name + "__FILE"); file != "" {
		content, err := os.ReadFile(file)
		return strings.TrimSpace(string(content)), err
	}
	return envOr(name, fallback), nil
}

type grafana struct {
	datasources map[string]datasource
	client      *http.Client
}

func (g *grafana) request(ctx context.Context, ds datasource, method, endpoint string, form url.Values) (
	*http.Request, error) {
	target := strings.TrimRight(ds.URL, "/") + endpoint
	var body io.Reader
	if method == http.MethodPost {
		body = strings.NewReader(form.Encode())
	} else if len(form) > 0 {
		target += "?" + form.Encode()
	}
	request, err := http.NewRequestWithContext(ctx, method, target, body)
	if err != nil {
		return nil, err
	}
	if method == http.MethodPost {
		request.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	if ds.BasicAuth {
		password, _ := ds.SecureJSONData["basicAuthPassword"].(string)
		request.SetBasicAuth(ds.BasicAuthUser, password)
	}
	return request, nil
}

// ask sends a request to the datasource and decodes its JSON answer; an answer that is not 2xx
// is an error holding its message, as Grafana's clients report it.
func (g *grafana) ask(request *http.Request, answer any) error {
	response, err := g.client.Do(request)
	if err != nil {
		return err
	}
	defer response.Body.Close()
	body, err := io.ReadAll(io.LimitReader(response.Body, 4<<20))
	if err != nil {
		return err
	}
	if response.StatusCode/100 != 2 {
		var message struct {
			Error   string `json:"error"`
			Message string `json:"message"`
		}
		json.Unmarshal(body, &message)
		text := strings.TrimSpace(message.Error + message.Message)
		if text == "" {
			text = strings.TrimSpace(string(body))
		}
		return fmt.Errorf("%d %s: %s", response.StatusCode, http.StatusText(response.StatusCode), text)
	}
	if err := json.Unmarshal(body, answer); err != nil {
		return fmt.Errorf("not JSON: %w", err)
	}
	return nil
}

// health asks the datasource what Grafana's own health check asks: Prometheus the instant
// query 1+1 (pkg/promlib/healthcheck.go), Loki the instant query vector(1)+vector(1)
// (pkg/tsdb/loki/healthcheck.go), and answers as Grafana does.
func (g *grafana) health(ctx context.Context, ds datasource) (int, map[string]string) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	switch ds.Type {
	case "prometheus":
		method := http.MethodPost // Grafana's default for Prometheus
		if m, _ := ds.JSONData["httpMethod"].(string); strings.EqualFold(m, "GET") {
			method = http.MethodGet
		}
		request, err := g.request(ctx, ds, method, "/api/v1/query", url.Values{"query": {"1+1"}, "time": {"4"}})
		var answer struct {
			Status string `json:"status"`
			Error  string `json:"error"`
		}
		if err == nil {
			err = g.ask(request, &answer)
		}
		if err == nil && answer.Status != "success" {
			err = fmt.Errorf("status %q: %s", answer.Status, answer.Error)
		}
		if err != nil {
			return 400, map[string]string{"status": "ERROR",
				"message": err.Error() + " - There was an error returned querying the Prometheus API."}
		}
		return 200, map[string]string{"status": "OK", "message": "Successfully queried the Prometheus API."}
	case "loki":
		request, err := g.request(ctx, ds, http.MethodGet, "/loki/api/v1/query", url.Values{
			"query": {"vector(1)+vector(1)"}, "time": {"4000000000"}, "direction": {"backward"}})
		var answer struct {
			Data struct {
				ResultType string `json:"resultType"`
				Result     []struct {
					Value []any `json:"value"`
				} `json:"result"`
			} `json:"data"`
		}
		if err == nil {
			err = g.ask(request, &answer)
		}
		if err == nil {
			result := answer.Data.Result
			if answer.Data.ResultType != "vector" || len(result) != 1 || len(result[0].Value) != 2 {
				err = errors.New("invalid response")
			} else if value, _ := result[0].Value[1].(string); value != "2" {
				err = errors.New("invalid response")
			}
		}
		if err != nil {
			return 400, map[string]string{"status": "ERROR",
				"message": "There was an error returned querying the Loki API.: " + err.Error()}
		}
		return 200, map[string]string{"status": "OK", "message": "Successfully queried the Loki API."}
	}
	return 404, map[string]string{"message": "Health check not implemented by the stand-in for type " + ds.Type}
}

func runGrafana(ctx context.Context, args []string) error {
	if len(args) > 0 {
		return fmt.Errorf("the stand-in takes no arguments (it reads GF_* variables), got %q", args)
	}
	provisioning := envOr("GF_PATHS_PROVISIONING", "/etc/grafana/provisioning")
	datasources, err := readDatasources(filepath.Join(provisioning, "datasources"))
	if err != nil {
		return err
	}
	user, err := grafanaSetting("GF_SECURITY_ADMIN_USER", "admin")
	if err != nil {
		return err
	}
	password, err := grafanaSetting("GF_SECURITY_ADMIN_PASSWORD", "admin")
	if err != nil {
		return err
	}
	anonymous := strings.EqualFold(os.Getenv("GF_AUTH_ANONYMOUS_ENABLED"), "true")
	g := &grafana{datasources: datasources, client: &http.Client{Timeout: 30 * time.Second}}

	// signedIn answers 401 as Grafana does unless the request is the admin's (basic auth) or
	// anonymous access is on and no credentials were given.
	signedIn := func(next http.HandlerFunc) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			givenUser, givenPassword, basic := r.BasicAuth()
			if basic {
				if subtle.ConstantTimeCompare([]byte(givenUser), []byte(user)) == 1 &&
					subtle.ConstantTimeCompare([]byte(givenPassword), []byte(password)) == 1 {
					next(w, r)
					return
				}
				writeJSON(w, 401, map[string]string{"message": "Invalid username or password",
					"messageId": "password-auth.failed", "statusCode": "401"})
				return
			}
			if anonymous && r.Header.Get("Authorization") == "" {
				next(w, r)
				return
			}
			writeJSON(w, 401, map[string]string{"message": "Unauthorized", "messageId": "auth.unauthorized",
				"statusCode": "401"})
		}
	}
	byUID := func(w http.ResponseWriter, r *http.Request) (datasource, bool) {
		ds, ok := g.datasources[r.PathValue("uid")]
		if !ok {
			writeJSON(w, 404, map[string]string{"message": "Data source not found"})
		}
		return ds, ok
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) { notFound(w) })
	mux.HandleFunc("GET /api/health", func(w http.ResponseWriter, r *http.Request) {
		// Grafana answers "ok" when its database answers; the stand-in has none to fail.
		writeJSON(w, 200, map[string]string{"database": "ok", "version": version, "commit": "standin"})
	})
	mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, r *http.Request) {
		writeText(w, 200, fmt.Sprintf("# HELP grafana_build_info A metric with a constant '1' value labeled by "+
			"version, revision, branch, and goversion from which Grafana was built\n# TYPE grafana_build_info gauge\n"+
			"grafana_build_info{branch=\"\",edition=\"oss\",goversion=%q,revision=\"standin\",version=\"%s\"} 1\n",
			runtime.Version(), promLabel(version)))
	})
	mux.HandleFunc("GET /api/datasources/uid/{uid}/health", signedIn(func(w http.ResponseWriter, r *http.Request) {
		if ds, ok := byUID(w, r); ok {
			status, answer := g.health(r.Context(), ds)
			writeJSON(w, status, answer)
		}
	}))
	mux.HandleFunc("GET /api/datasources/uid/{uid}", signedIn(func(w http.ResponseWriter, r *http.Request) {
		if ds, ok := byUID(w, r); ok {
			writeJSON(w, 200, map[string]any{"uid": ds.UID, "name": ds.Name, "type": ds.Type, "url": ds.URL,
				"access": ds.Access, "basicAuth": ds.BasicAuth, "jsonData": ds.JSONData, "readOnly": true})
		}
	}))
	mux.HandleFunc("/api/datasources/proxy/uid/{uid}/{rest...}", signedIn(func(w http.ResponseWriter, r *http.Request) {
		ds, ok := byUID(w, r)
		if !ok {
			return
		}
		target, err := url.Parse(ds.URL)
		if err != nil {
			writeJSON(w, 500, map[string]string{"message": "Invalid data source url"})
			return
		}
		rest := r.PathValue("rest")
		proxy := &httputil.ReverseProxy{
			Rewrite: func(out *httputil.ProxyRequest) {
				out.Out.URL.Scheme, out.Out.URL.Host = target.Scheme, target.Host
				out.Out.URL.Path = path.Join("/", target.Path, rest)
				out.Out.URL.RawPath = ""
				out.Out.URL.RawQuery = r.URL.RawQuery
				out.Out.Host = target.Host
				out.Out.Header.Del("Authorization")
				out.Out.Header.Del("Cookie")
				if ds.BasicAuth {
					password, _ := ds.SecureJSONData["basicAuthPassword"].(string)
					out.Out.SetBasicAuth(ds.BasicAuthUser, password)
				}
			},
			ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
				if rec, ok := w.(*recorder); ok {
					rec.note = fmt.Sprintf("proxy to %s: %v", ds.URL, err)
				}
				writeText(w, http.StatusBadGateway, "Bad Gateway")
			},
		}
		proxy.ServeHTTP(w, r)
	}))
	address := net.JoinHostPort(os.Getenv("GF_SERVER_HTTP_ADDR"), envOr("GF_SERVER_HTTP_PORT", "3000"))
	api, err := httpServer("grafana", "http", address, mux)
	if err != nil {
		return err
	}
	names := make([]string, 0, len(datasources))
	for uid, ds := range datasources {
		names = append(names, fmt.Sprintf("%s (%s, uid %s) at %s", ds.Name, ds.Type, uid, ds.URL))
	}
	sort.Strings(names)
	logf("grafana stand-in %s: datasources from %s: %s; anonymous access %v; no database, UI or dashboards",
		version, filepath.Join(provisioning, "datasources"), strings.Join(names, "; "), anonymous)
	return serveUntilDone(ctx, "grafana", api)
}
