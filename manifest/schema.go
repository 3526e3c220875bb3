package manifest

import (
	"bytes"
	"embed"
	"encoding/json"
	"fmt"
	"sync"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"golang.org/x/text/language"
	"golang.org/x/text/message"
)

// SchemaFS holds the JSON Schemas of the manifest formats (schema/*.json).
//
//go:embed schema/*.json
var SchemaFS embed.FS

// SchemaV1Path is the path of the v1 manifest schema inside SchemaFS.
const SchemaV1Path = "schema/manifest-v1.json"

var compiledV1 = sync.OnceValues(func() (*jsonschema.Schema, error) {
	raw, err := SchemaFS.ReadFile(SchemaV1Path)
	if err != nil {
		return nil, err
	}
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
	if err != nil {
		return nil, fmt.Errorf("parsing %s: %w", SchemaV1Path, err)
	}
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	if err := c.AddResource(SchemaV1Path, doc); err != nil {
		return nil, fmt.Errorf("loading %s: %w", SchemaV1Path, err)
	}
	return c.Compile(SchemaV1Path)
})

// ValidateSchema checks JSON bytes against the v1 JSON Schema. The error
// wraps ErrSchema and names the offending location.
func ValidateSchema(raw []byte) error {
	s, err := compiledV1()
	if err != nil {
		return fmt.Errorf("compiling manifest schema: %w", err)
	}
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
	if err != nil {
		return fmt.Errorf("%w: %w", ErrSchema, err)
	}
	if err := s.Validate(doc); err != nil {
		return fmt.Errorf("%w: %s", ErrSchema, schemaErrorText(err))
	}
	return nil
}

// schemaErrorText flattens a jsonschema validation error to its leaf causes
// ("at '/shapes/0/tdx': additional properties 'x' not allowed").
func schemaErrorText(err error) string {
	ve, ok := err.(*jsonschema.ValidationError)
	if !ok {
		return err.Error()
	}
	var b bytes.Buffer
	var walk func(e *jsonschema.ValidationError, propName bool)
	walk = func(e *jsonschema.ValidationError, propName bool) {
		kw := e.ErrorKind.KeywordPath()
		propName = propName || (len(kw) > 0 && kw[len(kw)-1] == "propertyNames")
		if len(e.Causes) == 0 {
			if b.Len() > 0 {
				b.WriteString("; ")
			}
			if propName {
				// jsonschema v6.0.3 reports a garbled instance location for
				// propertyNames failures; the message names the key.
				fmt.Fprintf(&b, "object key: %s", e.ErrorKind.LocalizedString(enPrinter))
				return
			}
			loc, _ := json.Marshal("/" + joinPtr(e.InstanceLocation))
			fmt.Fprintf(&b, "at %s: %s", loc, e.ErrorKind.LocalizedString(enPrinter))
			return
		}
		for _, c := range e.Causes {
			walk(c, propName)
		}
	}
	walk(ve, false)
	return b.String()
}

var enPrinter = message.NewPrinter(language.English)

func joinPtr(p []string) string {
	var b bytes.Buffer
	for i, s := range p {
		if i > 0 {
			b.WriteByte('/')
		}
		b.WriteString(s)
	}
	return b.String()
}
