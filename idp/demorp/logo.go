package demorp

import (
	"bytes"
	"image"
	"image/color"
	"image/png"
)

// logoPNG is the demo RP's logo, registered as its logo_uri so that the
// demo shows how a relying party's logo reaches the consent screen: the
// provider fetches it through its guarded fetcher and serves it itself.
// It is drawn here rather than shipped as a file: a teal tile with a
// white town hall.
var logoPNG = func() []byte {
	const n = 96
	img := image.NewNRGBA(image.Rect(0, 0, n, n))
	teal := color.NRGBA{0x00, 0x6d, 0x77, 0xff}
	white := color.NRGBA{0xff, 0xff, 0xff, 0xff}
	in := func(x, y int) color.Color {
		// A rounded tile: transparent outside corners of radius 20.
		const r = 20
		cx, cy := x, y
		if cx < r {
			cx = r
		} else if cx > n-1-r {
			cx = n - 1 - r
		}
		if cy < r {
			cy = r
		} else if cy > n-1-r {
			cy = n - 1 - r
		}
		if (x-cx)*(x-cx)+(y-cy)*(y-cy) > r*r {
			return color.NRGBA{}
		}
		switch {
		case y >= 30 && y < 40 && x >= 48-(y-30)*3 && x <= 48+(y-30)*3: // roof
			return white
		case y >= 40 && y < 44 && x >= 18 && x < 78: // beam
			return white
		case y >= 46 && y < 66 && (x-22)%12 < 6 && x >= 22 && x < 76: // columns
			return white
		case y >= 68 && y < 74 && x >= 16 && x < 80: // steps
			return white
		}
		return teal
	}
	for y := range n {
		for x := range n {
			img.Set(x, y, in(x, y))
		}
	}
	var b bytes.Buffer
	if err := png.Encode(&b, img); err != nil {
		panic(err)
	}
	return b.Bytes()
}()
