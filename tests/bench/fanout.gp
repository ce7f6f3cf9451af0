# fanout.gp: the fan-out plots of make bench, from the data files that
# tests/bench/report.py writes (dir/fanout-SYSTEM.dat: links p50 p99 last).
#
#   gnuplot -e "dir='build/bench'; systems='discoveryd floor socket.io fastapi'" \
#           tests/bench/fanout.gp
#
# writes dir/fanout-last.png (the last link) and dir/fanout-p50.png (the
# median link), one line per system, both axes logarithmic.

set terminal pngcairo size 900,600 font ",11"
set logscale xy
set grid xtics ytics mxtics mytics lc rgb "#dddddd"
set key top left box opaque
set xlabel "agents (links)"
set format x "%.0f"
set style data linespoints

set output dir."/fanout-last.png"
set title "Fan-out: trigger call to the last agent holding the event (median of rounds)"
set ylabel "ms"
plot for [s in systems] dir."/fanout-".s.".dat" using 1:4 title s lw 2 pt 7

set output dir."/fanout-p50.png"
set title "Fan-out: trigger call to the median agent (median of rounds)"
plot for [s in systems] dir."/fanout-".s.".dat" using 1:2 title s lw 2 pt 7
