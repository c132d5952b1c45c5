// Estimate Pi with Spark from Java (the classic Monte Carlo example), for JVM submissions
// such as Spark's REST submission protocol (`spark-submit --deploy-mode cluster`).
//
// Build it against the jars of the installed pyspark package:
//
//     javac -cp "$SPARK_HOME/jars/*" -d build examples/java/JavaPi.java
//     jar cf javapi.jar -C build .
//
// Arguments: [partitions (default 2)] [seconds to sleep first (default 0)]. The sleep comes
// before the Spark session, so a test can cancel a running driver without paying for one.

import java.util.ArrayList;
import java.util.List;

import org.apache.spark.api.java.JavaSparkContext;
import org.apache.spark.sql.SparkSession;

public final class JavaPi {
    private static final int SAMPLES_PER_PARTITION = 100_000;

    private JavaPi() {}

    public static void main(String[] args) throws Exception {
        int partitions = args.length > 0 ? Integer.parseInt(args[0]) : 2;
        long sleepSeconds = args.length > 1 ? Long.parseLong(args[1]) : 0;
        if (sleepSeconds > 0) {
            System.out.println("JavaPi sleeping " + sleepSeconds + " s");
            Thread.sleep(sleepSeconds * 1000);
        }
        SparkSession spark = SparkSession.builder().appName("JavaPi").getOrCreate();
        JavaSparkContext jsc = new JavaSparkContext(spark.sparkContext());
        int n = SAMPLES_PER_PARTITION * partitions;
        List<Integer> seeds = new ArrayList<>(n);
        for (int i = 0; i < n; i++) {
            seeds.add(i);
        }
        long count = jsc.parallelize(seeds, partitions)
            .filter(i -> {
                double x = Math.random() * 2 - 1;
                double y = Math.random() * 2 - 1;
                return x * x + y * y <= 1;
            })
            .count();
        System.out.println("Pi is roughly " + 4.0 * count / n);
        spark.stop();
    }
}
