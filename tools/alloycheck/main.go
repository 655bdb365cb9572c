// Command alloycheck reads Alloy configuration with Alloy's own syntax packages, for the tests.
//
//	alloycheck parse FILE                 the file as JSON: blocks, and attributes evaluated where
//	                                      they are constants, or {"expr": source} where they refer
//	                                      to other components
//	alloycheck template TEXT VALUE...     TEXT run as loki.process's stage.template runs it, with
//	                                      .Value set to each VALUE in turn (absent for the VALUE
//	                                      "<absent>", as for a line without the field); prints a
//	                                      JSON list
package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"text/template"

	"github.com/grafana/alloy/syntax/ast"
	"github.com/grafana/alloy/syntax/parser"
	"github.com/grafana/alloy/syntax/printer"
	"github.com/grafana/alloy/syntax/vm"
)

func main() {
	if len(os.Args) < 3 {
		fail("usage: alloycheck parse FILE | alloycheck template TEXT VALUE...")
	}
	var out interface{}
	var err error
	switch os.Args[1] {
	case "parse":
		out, err = parse(os.Args[2])
	case "template":
		out, err = runTemplate(os.Args[2], os.Args[3:])
	default:
		err = fmt.Errorf("unknown command %q", os.Args[1])
	}
	if err != nil {
		fail(err.Error())
	}
	if err := json.NewEncoder(os.Stdout).Encode(out); err != nil {
		fail(err.Error())
	}
}

func fail(message string) {
	fmt.Fprintln(os.Stderr, "alloycheck:", message)
	os.Exit(1)
}

func parse(path string) (interface{}, error) {
	source, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	file, err := parser.ParseFile(path, source)
	if err != nil {
		return nil, err
	}
	return body(file.Body)
}

// body renders statements in order: {"attr": name, "value": v} or {"block": name, "label": l, "body": [...]}.
func body(statements ast.Body) ([]interface{}, error) {
	rendered := []interface{}{}
	for _, statement := range statements {
		switch s := statement.(type) {
		case *ast.AttributeStmt:
			value, err := expression(s.Value)
			if err != nil {
				return nil, err
			}
			rendered = append(rendered, map[string]interface{}{"attr": s.Name.Name, "value": value})
		case *ast.BlockStmt:
			inner, err := body(s.Body)
			if err != nil {
				return nil, err
			}
			rendered = append(rendered, map[string]interface{}{
				"block": joinName(s.Name), "label": s.Label, "body": inner,
			})
		default:
			return nil, fmt.Errorf("unexpected statement %T", statement)
		}
	}
	return rendered, nil
}

func joinName(parts []string) string {
	var buffer bytes.Buffer
	for i, part := range parts {
		if i > 0 {
			buffer.WriteByte('.')
		}
		buffer.WriteString(part)
	}
	return buffer.String()
}

// expression evaluates a constant expression; one that refers to something else is returned as source.
func expression(e ast.Expr) (interface{}, error) {
	var value interface{}
	if err := vm.New(e).Evaluate(&vm.Scope{}, &value); err == nil {
		return value, nil
	}
	var source bytes.Buffer
	if err := printer.Fprint(&source, e); err != nil {
		return nil, err
	}
	return map[string]string{"expr": source.String()}, nil
}

const absent = "<absent>"

// Of the functions stage.template adds to Go's (internal/component/loki/process/stages/template.go
// at v1.5.1, extraFunctionMap, as at v1.13.1), those the stack's templates use.
var stageFunctions = template.FuncMap{"ToLower": strings.ToLower}

func runTemplate(text string, values []string) (interface{}, error) {
	parsed, err := template.New("stage.template").Funcs(stageFunctions).Parse(text)
	if err != nil {
		return nil, err
	}
	results := []string{}
	for _, value := range values {
		data := map[string]interface{}{}
		if value != absent {
			data["Value"] = value
		}
		var out bytes.Buffer
		if err := parsed.Execute(&out, data); err != nil {
			return nil, err
		}
		results = append(results, out.String())
	}
	return results, nil
}
