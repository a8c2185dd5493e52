"""The data sets on disk: listing, labels and splits (chest X-rays, COVID-19, LGG MRI, CT, the gate's images). Read by
training and checks, never by the app."""
