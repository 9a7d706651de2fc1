package resultfmt

import (
	"encoding/csv"
	"os"
	"path/filepath"
	"testing"
)

func TestCellsRoundTripAndTornTail(t *testing.T) {
	dir := t.TempDir()
	w, err := OpenCellWriter(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"a", "b"} {
		c := &Cell{ID: id, Kind: KindQuality, Method: "oracle", Variant: "oracle", Metrics: map[string]Stat{MetricRecall: {Mean: 1, Count: 3}}}
		if err := w.Append(c); err != nil {
			t.Fatal(err)
		}
	}
	w.Close()
	// Simulate a crash in the middle of writing a third record.
	f, _ := os.OpenFile(filepath.Join(dir, CellsFile), os.O_APPEND|os.O_WRONLY, 0)
	f.WriteString(`{"id":"c","kind":"qual`)
	f.Close()
	cells, err := ReadCells(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(cells) != 2 || cells[1].ID != "b" || cells[0].Metrics[MetricRecall].Count != 3 {
		t.Fatalf("got %d cells: %+v", len(cells), cells)
	}
	// The torn tail is gone from disk, so appending again yields valid JSONL.
	w, err = OpenCellWriter(dir)
	if err != nil {
		t.Fatal(err)
	}
	w.Append(&Cell{ID: "c", Kind: KindQuality})
	w.Close()
	if cells, err = ReadCells(dir); err != nil || len(cells) != 3 {
		t.Fatalf("after resume: %d cells, err %v", len(cells), err)
	}
}

func TestCorruptMiddleLineIsAnError(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, CellsFile), []byte("{\"id\":\"a\"}\nnot json\n{\"id\":\"b\"}\n"), 0o644)
	if _, err := ReadCells(dir); err == nil {
		t.Fatal("corrupt middle line accepted")
	}
}

func TestSummaryCSV(t *testing.T) {
	dir := t.TempDir()
	cells := []*Cell{
		{ID: "x", Kind: KindQuality, Workload: "w", Method: "oracle", Variant: "oracle", Sparsity: 8, Samples: 4,
			Metrics: map[string]Stat{MetricRecall: {Mean: 1, Median: 1, P10: 1, P90: 1}}},
		{ID: "y", Kind: KindLatency, Method: "dense", Variant: "dense", Latency: &Latency{Stage: "dense", Context: 1024, MedianUS: 12.5, SamplesUS: []float64{12, 12.5, 13}}},
	}
	if err := WriteSummary(dir, cells); err != nil {
		t.Fatal(err)
	}
	f, _ := os.Open(filepath.Join(dir, SummaryFile))
	defer f.Close()
	rows, err := csv.NewReader(f).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 3 {
		t.Fatalf("%d rows", len(rows))
	}
	col := map[string]int{}
	for i, c := range rows[0] {
		col[c] = i
	}
	if rows[1][col["recall_mean"]] != "1" || rows[2][col["median_us"]] != "12.5" || rows[2][col["repeats"]] != "3" || rows[1][col["median_us"]] != "" {
		t.Fatalf("unexpected rows %v", rows)
	}
}
