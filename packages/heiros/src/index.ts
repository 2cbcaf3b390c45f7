// HeirOS (hierarchical DAG, analysis, flow agreements) arrives with issue #3.
export {}
