package manifest_test

import (
	"fmt"

	"github.com/mkcvm/mkcvm/manifest"
	"github.com/mkcvm/mkcvm/manifest/manifesttest"
)

// The manifest's identity is the sha256 of its canonical bytes; the same
// value always encodes to the same bytes. Supersedes and revokes entries
// name manifests by this digest. (The first line equals `sha256sum
// manifest/testdata/sample.golden`; the second is the digest the
// registry reports for the published bundle, see TestPublishFetch.)
func ExampleDigest() {
	d, err := manifest.Digest(manifesttest.Sample())
	if err != nil {
		panic(err)
	}
	fmt.Println(d)
	_, desc, _ := manifest.BundleOCIManifest(manifesttest.Sample())
	fmt.Println(desc.Digest)
	// Output:
	// sha256:f4b60c6d8ee0ac8eecef307c29104132865826e8852239dab847fb9b24ece084
	// sha256:38f7017c058d4c7ccd1c6e7e425b9b29717361b873072a4a098bd41cb5ebdb68
}
