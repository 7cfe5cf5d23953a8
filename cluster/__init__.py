"""trunkstore's tracker / storage network layer, speaking FastDFS's wire protocol."""
