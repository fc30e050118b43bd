# plots.gp: the plots of bench/run, drawn from the data files that
# bench/run_report.py writes. Set with gnuplot -e:
#   kind         'latency': publish->deliver percentiles against offered load,
#                one panel per target (datadir/latency-TARGET.dat);
#                'fanout': deliveries/s and broker CPU per delivery against
#                subscribers, one line per target (datadir/fanout-TARGET.dat)
#   datadir, targets (space-separated), out (the PNG), subscribers, stamp
if (strstrt(GPVAL_TERMINALS, "pngcairo") > 0) {
    set terminal pngcairo size 1200,480 font ",10"
} else {
    set terminal png size 1200,480
}
set output out
set grid
set key top left
set style data linespoints
n = words(targets)

if (kind eq "latency") {
    # One y range for every panel, so that targets compare at a glance.
    ymin = 1e300
    ymax = 0
    do for [i = 1:n] {
        f = sprintf("%s/latency-%s.dat", datadir, word(targets, i))
        stats f using 2 nooutput
        ymin = STATS_min < ymin ? STATS_min : ymin
        stats f using 5 nooutput
        ymax = STATS_max > ymax ? STATS_max : ymax
    }
    set yrange [ymin / 1.5 : ymax * 1.5]
    set multiplot layout 1, n title "publish -> deliver latency, ".subscribers." subscribers (".stamp.")"
    set logscale y
    set xrange [0:*]
    set xlabel "offered load (events/s pushed)"
    set ylabel "latency (ms)"
    do for [i = 1:n] {
        t = word(targets, i)
        f = sprintf("%s/latency-%s.dat", datadir, t)
        set title t
        plot f using 1:2 title "p50", f using 1:3 title "p90", f using 1:4 title "p99", \
             f using 1:5 title "p99.9"
    }
    unset multiplot
}

if (kind eq "fanout") {
    set multiplot layout 1, 2 title "fan-out as fast as acknowledged (".stamp.")"
    set logscale x
    set offsets graph 0.05, graph 0.05, 0, 0
    set xlabel "subscribers"
    set xtics (10, 100, 1000, 10000)
    set title "deliveries per second"
    set ylabel "million deliveries/s"
    set yrange [0:*]
    plot for [i = 1:n] sprintf("%s/fanout-%s.dat", datadir, word(targets, i)) using 1:($2 / 1e6) \
        title word(targets, i)
    set title "broker CPU per delivery"
    set ylabel "µs of broker CPU per delivery"
    plot for [i = 1:n] sprintf("%s/fanout-%s.dat", datadir, word(targets, i)) using 1:3 \
        title word(targets, i)
    unset multiplot
}
