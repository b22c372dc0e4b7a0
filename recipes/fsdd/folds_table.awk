# The leave-one-speaker-out table from folds.sh's results.tsv (speaker, training, manifest, WER, CER):
# one row per (speaker, training) in the order first run, the latest evaluation of each, then the mean
# over the speakers of each training.
{ key = $1 "\t" $2; if (!(key in seen)) { seen[key] = 1; order[++rows] = key }
  score[key "\t" $3] = $4 " / " $5; wer[key "\t" $3] = $4 }
END {
    print "| held-out speaker | training | connected digits WER / CER | isolated digits WER / CER |"
    print "|---|---|---|---|"
    for (i = 1; i <= rows; i++) {
        key = order[i]; split(key, k, "\t")
        print "| " k[1] " | " k[2] " | " score[key "\tconnected_test"] " | " score[key "\tdigits_test"] " |"
        if (!(k[2] in folds)) ways[++nways] = k[2]
        folds[k[2]]++; connected[k[2]] += wer[key "\tconnected_test"]; isolated[k[2]] += wer[key "\tdigits_test"]
    }
    for (j = 1; j <= nways; j++) {
        t = ways[j]
        printf "| mean of %d | %s | %.2f | %.2f |\n", folds[t], t, connected[t] / folds[t], isolated[t] / folds[t]
    }
}
